/*
 * Two ringvpn nodes in one process, joined by a "network" of our own: a
 * loop that carries each node's datagrams to the other, on a virtual clock.
 * Node A takes an Ethernet frame as if read from its TAP; node B must hand
 * the same bytes out as a frame for its TAP. Also checks the header against
 * the library (ABI version, struct sizes) and that errors name the problem.
 *
 *   cc -Wall -Wextra -Werror -Iinclude examples/c/two_nodes.c \
 *      target/release/libringvpn.a -lpthread -ldl -lm -o two_nodes
 *   ./two_nodes            # exit 0: frame delivered
 */
#include "ringvpn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "two_nodes: " __VA_ARGS__);                         \
            fputc('\n', stderr);                                                \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* Our "network": two hosts, one address each (198.18.0.0/15, the
 * benchmarking range, as everywhere in ringvpn's tests). */
static const uint8_t ADDR[2][4] = {{198, 18, 0, 1}, {198, 18, 0, 2}};
#define PORT 5140

static rv_endpoint endpoint_of(int host) {
    rv_endpoint e;
    memset(&e, 0, sizeof e);
    e.family = 4;
    e.port = PORT;
    memcpy(e.addr, ADDR[host], 4);
    return e;
}

static int host_of(const rv_endpoint *e) {
    for (int h = 0; h < 2; h++)
        if (e->family == 4 && e->port == PORT && memcmp(e->addr, ADDR[h], 4) == 0)
            return h;
    return -1;
}

static rv_node *new_node(int me, const char *key, const char *peer_public, uint64_t now) {
    char config[512];
    snprintf(config, sizeof config,
             "[node]\n"
             "listen = 198.18.0.%d:%d\n"
             "tap = rv%c\n"
             "\n"
             "[peer]\n"
             "name = %c\n"
             "public-key = %s\n"
             "endpoint = 198.18.0.%d:%d\n",
             me + 1, PORT, 'a' + me, 'a' + (1 - me), peer_public, 2 - me, PORT);
    rv_node_options o;
    memset(&o, 0, sizeof o);
    o.struct_size = sizeof o;
    o.config = config;
    o.config_name = me == 0 ? "a.conf" : "b.conf";
    o.private_key = key;
    rv_endpoint self = endpoint_of(me);
    o.endpoints = &self;
    o.endpoints_len = 1;
    o.random_seed = 1000 + (uint64_t)me; /* reproducible */
    rv_node *node = NULL;
    rv_error err;
    int r = rv_node_new(&o, now, &node, &err);
    CHECK(r == RV_OK, "rv_node_new: %d %s", r, err.message);
    return node;
}

/* Moves every datagram each node wants sent to the other; returns how many. */
static int carry(rv_node *nodes[2], uint64_t now) {
    int moved = 0;
    uint8_t buf[RV_MAX_PACKET];
    for (int h = 0; h < 2; h++) {
        rv_endpoint to;
        size_t len;
        int r;
        while ((r = rv_node_poll_transmit(nodes[h], &to, buf, sizeof buf, &len)) == RV_OK) {
            int dst = host_of(&to);
            CHECK(dst == 1 - h, "node %d sent to an unknown endpoint", h);
            rv_endpoint from = endpoint_of(h);
            r = rv_node_handle_datagram(nodes[dst], now, &from, buf, len);
            CHECK(r == RV_OK, "handle_datagram: %d", r);
            moved++;
        }
        CHECK(r == RV_EMPTY, "poll_transmit: %d", r);
    }
    return moved;
}

int main(void) {
    /* The header is the library's. */
    CHECK(rv_abi_version() == RV_ABI_VERSION, "ABI %u, header %d", rv_abi_version(),
          RV_ABI_VERSION);
    CHECK(rv_struct_size(RV_STRUCT_ERROR) == sizeof(rv_error), "rv_error size");
    CHECK(rv_struct_size(RV_STRUCT_ENDPOINT) == sizeof(rv_endpoint), "rv_endpoint size");
    CHECK(rv_struct_size(RV_STRUCT_NODE_OPTIONS) == sizeof(rv_node_options),
          "rv_node_options size");
    CHECK(rv_struct_size(RV_STRUCT_EVENT) == sizeof(rv_event), "rv_event size");
    CHECK(rv_struct_size(RV_STRUCT_DAEMON_OPTIONS) == sizeof(rv_daemon_options),
          "rv_daemon_options size");
    printf("ringvpn %s, ABI %u\n", rv_version(), rv_abi_version());

    /* A broken config is an error naming the line, not a crash. */
    {
        rv_node_options o;
        memset(&o, 0, sizeof o);
        o.struct_size = sizeof o;
        o.config = "[node]\nlisten = nowhere\n";
        o.config_name = "broken.conf";
        o.random_seed = 1;
        char key[64];
        CHECK(rv_key_generate(key, sizeof key, NULL) == RV_OK, "genkey");
        o.private_key = key;
        rv_node *node = NULL;
        rv_error err;
        int r = rv_node_new(&o, 0, &node, &err);
        CHECK(r == RV_ERR_CONFIG && node == NULL, "broken config accepted: %d", r);
        CHECK(strstr(err.message, "broken.conf:2") != NULL, "message: %s", err.message);
        printf("broken config: %s\n", err.message);
    }

    char keys[2][64], publics[2][64];
    for (int h = 0; h < 2; h++) {
        CHECK(rv_key_generate(keys[h], sizeof keys[h], NULL) == RV_OK, "genkey");
        CHECK(rv_key_public(keys[h], publics[h], sizeof publics[h], NULL) == RV_OK, "pubkey");
    }
    uint64_t now = 1000000; /* µs, our clock */
    rv_node *nodes[2] = {new_node(0, keys[0], publics[1], now),
                         new_node(1, keys[1], publics[0], now)};
    char pk[64];
    CHECK(rv_node_public_key(nodes[0], pk, sizeof pk, NULL) == RV_OK, "public_key");
    CHECK(strcmp(pk, publics[0]) == 0, "public key %s, expected %s", pk, publics[0]);

    /* A broadcast frame (an ARP request, say) from A's side. */
    uint8_t frame[60];
    memset(frame, 0, sizeof frame);
    memset(frame, 0xff, 6);                                            /* to everyone */
    memcpy(frame + 6, "\x02\x00\x00\x00\x00\x0a", 6);                  /* from A's host */
    frame[12] = 0x08, frame[13] = 0x06;                                 /* ARP */
    memcpy(frame + 14, "ringvpn in C: one frame across", 30);

    int delivered = 0;
    uint64_t started = now;
    while (!delivered && now - started < 10000000) { /* 10 virtual seconds */
        if ((now - started) % 200000 == 0) {
            int r = rv_node_handle_frame(nodes[0], now, frame, sizeof frame);
            CHECK(r == RV_OK, "handle_frame: %d", r);
        }
        while (carry(nodes, now) > 0) {
        }
        uint8_t out[RV_MAX_PACKET];
        size_t len;
        int r;
        while ((r = rv_node_poll_frame(nodes[1], out, sizeof out, &len)) == RV_OK) {
            CHECK(len == sizeof frame && memcmp(out, frame, len) == 0,
                  "B delivered a different frame (%zu bytes)", len);
            delivered++;
        }
        CHECK(r == RV_EMPTY, "poll_frame: %d", r);
        while ((r = rv_node_poll_frame(nodes[0], out, sizeof out, &len)) == RV_OK) {
        }
        /* Advance the clock 10 ms, running what is due on the way. */
        now += 10000;
        for (int h = 0; h < 2; h++) {
            uint64_t deadline;
            if (rv_node_next_deadline(nodes[h], &deadline) == RV_OK && deadline <= now)
                CHECK(rv_node_handle_timeout(nodes[h], now) == RV_OK, "timeout");
        }
    }
    CHECK(delivered, "no frame reached B in 10 virtual seconds");
    printf("frame delivered after %.2f virtual s\n", (double)(now - started) / 1e6);

    /* Status as JSON: too small a buffer says how much it needs. */
    size_t need = 0;
    int r = rv_node_status_json(nodes[1], now, NULL, 0, &need);
    CHECK(r == RV_ERR_TOO_SMALL && need > 0, "status size: %d", r);
    char *json = malloc(need + 1);
    CHECK(json != NULL, "malloc");
    CHECK(rv_node_status_json(nodes[1], now, json, need + 1, NULL) == RV_OK, "status");
    CHECK(strstr(json, "\"peers\"") != NULL, "status: %s", json);
    printf("B's status: %zu bytes of JSON\n", need);
    free(json);

    rv_node_free(nodes[0]);
    rv_node_free(nodes[1]);
    rv_node_free(NULL);
    printf("ok\n");
    return 0;
}
