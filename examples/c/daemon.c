/*
 * The daemon loop inside a C program (the API's second level): the program
 * opens the TAP device and binds the UDP socket itself, hands both to
 * ringvpn, runs the loop on a thread of its own, asks the daemon for its
 * status over the control socket, then stops it from the main thread.
 *
 * Needs root (a TAP device); run it in a network namespace of its own:
 *   ip netns add rvc && ip netns exec rvc ./daemon /tmp/rvc.sock; ip netns del rvc
 */
#include "ringvpn.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "daemon: " __VA_ARGS__);                            \
            fputc('\n', stderr);                                                \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static rv_daemon *daemon_handle;
static int run_result = 99;
static rv_error run_error;

static void *loop(void *unused) {
    (void)unused;
    run_result = rv_daemon_run(daemon_handle, &run_error);
    return NULL;
}

/* One request on the control socket; the answer into buf. */
static int query(const char *socket_path, const char *request, char *buf, size_t cap) {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", socket_path);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(s);
        return -1;
    }
    if (write(s, request, strlen(request)) < 0 || write(s, "\n", 1) < 0) {
        close(s);
        return -1;
    }
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = read(s, buf + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(s);
    return 0;
}

int main(int argc, char **argv) {
    CHECK(argc == 2, "usage: daemon CONTROL_SOCKET");
    const char *control = argv[1];

    /* The program's own TAP device and UDP socket. */
    int tap = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    CHECK(tap >= 0, "open /dev/net/tun (root?)");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "rvc0");
    CHECK(ioctl(tap, TUNSETIFF, &ifr) == 0, "TUNSETIFF");
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(udp, (struct sockaddr *)&sin, sizeof sin) == 0, "bind");

    char key[64];
    CHECK(rv_key_generate(key, sizeof key, NULL) == RV_OK, "genkey");
    char config[512];
    snprintf(config, sizeof config,
             "[node]\n"
             "listen = 127.0.0.1:0\n"
             "tap = rvc0\n"
             "address = 100.64.77.1/24\n"
             "control = %s\n",
             control);
    rv_daemon_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.config = config;
    o.config_name = "embedded.conf";
    o.private_key = key;
    o.tap_fd = tap;
    o.udp_fd = udp;
    rv_error err;
    int r = rv_daemon_new(&o, &daemon_handle, &err);
    CHECK(r == RV_OK, "rv_daemon_new: %d %s", r, err.message);

    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, loop, NULL) == 0, "pthread_create");
    char status[8192] = "";
    for (int i = 0; i < 100 && strstr(status, "100.64.77.1") == NULL; i++) {
        struct timespec ms50 = {0, 50000000};
        nanosleep(&ms50, NULL);
        query(control, "status", status, sizeof status);
    }
    CHECK(strstr(status, "100.64.77.1") != NULL, "no status from the daemon: %s", status);
    printf("%s", status);

    CHECK(rv_daemon_stop(daemon_handle) == RV_OK, "rv_daemon_stop");
    CHECK(pthread_join(thread, NULL) == 0, "pthread_join");
    CHECK(run_result == RV_OK, "rv_daemon_run: %d %s", run_result, run_error.message);
    r = rv_daemon_run(daemon_handle, &err);
    CHECK(r == RV_ERR_STATE, "a second run: %d", r);
    rv_daemon_free(daemon_handle);
    CHECK(access(control, F_OK) != 0, "control socket left behind");
    printf("stopped\n");
    return 0;
}
