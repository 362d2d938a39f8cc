/*
 * ringvpn.h — embed a ringvpn node in a C program.
 *
 * Two levels (docs/EMBEDDING.md is the guide):
 *
 *  1. The sans-IO core, rv_node_*: the program owns its sockets, its TAP
 *     (or whatever carries its Ethernet frames) and its clock. It hands the
 *     node datagrams, frames and timeouts, each with `now_us` (microseconds
 *     from any origin, never going back), and drains what to send, what to
 *     deliver, events and the next deadline. No threads, no fds, no clock
 *     inside: the same core the daemon and ringvpn's simulator drive.
 *
 *  2. The daemon loop, rv_daemon_*: `ringvpn run` on this thread, on a TAP
 *     fd and a UDP socket the program may pass in; rv_daemon_stop (from any
 *     thread or a signal handler) ends it.
 *
 * Conventions: handles are opaque; calls return RV_OK (0), RV_EMPTY (1,
 * nothing to drain) or a negative RV_ERR_*; calls that can fail for a
 * reason worth a sentence fill a caller-provided rv_error. Option structs
 * begin with struct_size (set it to sizeof) and end with reserved fields
 * (zero them): later versions grow them compatibly. A handle is used by
 * one thread at a time, except rv_daemon_stop.
 *
 * Link: libringvpn.a (cargo rustc --release --lib --features ffi
 * --crate-type staticlib) with -lpthread -ldl -lm, or libringvpn.so.
 * The release library aborts on an internal panic (as the daemon does);
 * a debug build returns RV_ERR_PANIC instead.
 */
#ifndef RINGVPN_H
#define RINGVPN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RV_ABI_VERSION 1

/* Results. */
#define RV_OK 0
#define RV_EMPTY 1             /* nothing to drain / no deadline */
#define RV_ERR_INVALID (-1)    /* null pointer, wrong struct_size, bad value */
#define RV_ERR_CONFIG (-2)     /* the config text: message says NAME:LINE: what */
#define RV_ERR_KEY (-3)        /* private key, certificate or CA files */
#define RV_ERR_TOO_SMALL (-4)  /* buffer too small: *len says how much; item kept */
#define RV_ERR_IO (-5)         /* TAP, sockets, poll (daemon level) */
#define RV_ERR_PANIC (-6)      /* a bug in ringvpn, caught at the boundary */
#define RV_ERR_STATE (-7)      /* a call out of order (rv_daemon_run twice) */
#define RV_ERR_FULL (-8)       /* packet pool exhausted: input dropped, counted */

/* The largest datagram or frame the node takes or gives. */
#define RV_MAX_PACKET 1856

typedef struct rv_node rv_node;
typedef struct rv_daemon rv_daemon;

typedef struct rv_error {
    int32_t code;
    char message[256]; /* NUL-terminated, empty on success */
} rv_error;

typedef struct rv_endpoint {
    uint8_t family;   /* 4 or 6 */
    uint8_t tcp;      /* 1: a TCP endpoint (config `tcp = on`), 0: UDP */
    uint16_t port;    /* host byte order */
    uint8_t addr[16]; /* IPv4 in addr[0..4], network order */
    uint32_t scope_id;
} rv_endpoint;

typedef struct rv_node_options {
    uint32_t struct_size;    /* sizeof(rv_node_options) */
    uint32_t reserved0;
    const char *config;      /* ringvpn.conf text (docs/man/ringvpn.conf.5.scd) */
    const char *config_name; /* names the config in error messages; NULL: "config" */
    const char *private_key; /* base64, as `ringvpn genkey -` prints; NULL: the
                                config's `key = FILE` */
    const rv_endpoint *endpoints; /* our own addresses, advertised to the overlay */
    size_t endpoints_len;
    uint64_t wall_clock_us;  /* Unix time now in µs (certificates, records); 0: ask the OS */
    uint64_t random_seed;    /* 0: from the OS; fixed: reproducible runs */
    uint64_t reserved[4];
} rv_node_options;

#define RV_EVENT_ADDRESS_HELD 1     /* our virtual IPv4 address is ours: configure it */
#define RV_EVENT_ADDRESS_CONFLICT 2 /* another member holds our static address */
#define RV_EVENT_ROUTE_ADDED 3      /* route prefix toward the node's interface */
#define RV_EVENT_ROUTE_REMOVED 4    /* take that route away */

typedef struct rv_event {
    uint32_t kind;    /* RV_EVENT_* */
    uint8_t family;   /* 4 or 6 */
    uint8_t prefix_len;
    uint16_t reserved0;
    uint8_t addr[16];
    uint64_t reserved[2];
} rv_event;

typedef struct rv_daemon_options {
    uint32_t struct_size;    /* sizeof(rv_daemon_options) */
    uint32_t reserved0;
    const char *config;
    const char *config_name;
    const char *private_key; /* as in rv_node_options */
    int32_t tap_fd;          /* an open TAP (IFF_TAP|IFF_NO_PI) named by the config's
                                `tap =`, or -1: open it as `ringvpn run` does */
    int32_t udp_fd;          /* a bound UDP socket, or -1: bind `listen` */
    uint64_t reserved[4];
} rv_daemon_options;

/* Version and header checks. */
uint32_t rv_abi_version(void);
const char *rv_version(void);
#define RV_STRUCT_ERROR 1
#define RV_STRUCT_ENDPOINT 2
#define RV_STRUCT_NODE_OPTIONS 3
#define RV_STRUCT_EVENT 4
#define RV_STRUCT_DAEMON_OPTIONS 5
size_t rv_struct_size(int which); /* the library's sizeof, 0 if unknown */

/* Keys, as `ringvpn genkey -` and `ringvpn pubkey` (base64, NUL-terminated;
 * 45 bytes hold one). */
int rv_key_generate(char *buf, size_t cap, size_t *len);
int rv_key_public(const char *private_key, char *buf, size_t cap, size_t *len);

/* Level 1: the sans-IO node. */
int rv_node_new(const rv_node_options *opts, uint64_t now_us, rv_node **out, rv_error *err);
void rv_node_free(rv_node *node);
int rv_node_public_key(const rv_node *node, char *buf, size_t cap, size_t *len);
int rv_node_handle_datagram(rv_node *node, uint64_t now_us, const rv_endpoint *from,
                            const uint8_t *data, size_t len);
int rv_node_handle_frame(rv_node *node, uint64_t now_us, const uint8_t *frame, size_t len);
int rv_node_handle_timeout(rv_node *node, uint64_t now_us);
int rv_node_poll_transmit(rv_node *node, rv_endpoint *to, uint8_t *buf, size_t cap,
                          size_t *len);
int rv_node_poll_frame(rv_node *node, uint8_t *buf, size_t cap, size_t *len);
int rv_node_poll_event(rv_node *node, rv_event *ev);
int rv_node_next_deadline(const rv_node *node, uint64_t *deadline_us);
int rv_node_status_json(const rv_node *node, uint64_t now_us, char *buf, size_t cap,
                        size_t *len);

/* Level 2: the daemon loop. Takes ownership of the fds it is given. */
int rv_daemon_new(const rv_daemon_options *opts, rv_daemon **out, rv_error *err);
int rv_daemon_run(rv_daemon *daemon, rv_error *err);
int rv_daemon_stop(const rv_daemon *daemon);
void rv_daemon_free(rv_daemon *daemon);

#ifdef __cplusplus
}
#endif

#endif /* RINGVPN_H */
