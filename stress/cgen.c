/* cgen.c - threadswoole's C epoll load generator for loopback benchmarks (echo and WebSocket).
 *
 * Why it exists: on a two-core machine a Python load generator takes a core itself and
 * cannot keep a Python server saturated, so the server idles between wake-ups and
 * per-wake-up costs (which differ a lot between event loops) dominate the figure. This
 * generator costs a few microseconds per request, so the server stays busy: the regime
 * users compare servers in. stress/cgen.py builds it with gcc at run time and parses its line.
 *
 * usage: cgen -m echo|ws -H HOST -p PORT -c CONNS -t THREADS -s SIZE -d SECONDS [-P /path]
 *             [-n MAX_REQUESTS]
 * Each of THREADS pthreads owns an epoll and its share of CONNS closed-loop connections: send
 * one request (one write of a buffer prepared once), wait for the whole reply, check it, record
 * the latency, send the next. echo: SIZE bytes echoed back byte for byte. ws: an HTTP/1.1
 * upgrade, then a masked binary frame of SIZE bytes per request, answered by one unmasked
 * frame with the same payload (a server ping gets a pong). The first 8 payload bytes carry the
 * request's sequence number, so a stale or duplicated reply is a mismatch, not a success.
 * Errors (refused, reset, early close, mismatch, bad frame) are counted, the connection is
 * closed and not reopened. Only loopback targets (127.0.0.0/8, ::1); anything else: exit 2.
 * Output, one line on stdout: rps= requests= p50_us= p90_us= p99_us= p999_us= max_us= mean_us=
 * errors= (timeouts included) timeouts= duration_s= (whole wall time, connects included) measured_s= connections= connected=
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONNECT_TIMEOUT_NS (5ull * 1000000000ull)  /* connects + upgrades must finish by then */
#define MAX_SIZE (64 << 20)
#define NBUCKETS (128 + 64 * 34) /* log-linear: 1 ns steps below 128 ns, then 64 per octave */
#define PING_ROOM 256            /* receive room for a control frame beside a reply */
#define STALL_NS 1000000000ull   /* a reply still missing this long at the end: a timeout error */

enum { ST_CONNECTING, ST_UPGRADING, ST_READY, ST_DEAD };

struct conn {
    int fd, state, busy; /* busy: a request is outstanding */
    unsigned char *sbuf; /* what one request writes: payload (echo) or the masked frame (ws) */
    size_t slen, soff;   /* soff < slen: a partial write is waiting for EPOLLOUT */
    size_t hdrlen;       /* ws: frame header + mask key length at the front of sbuf */
    unsigned char *payload; /* the payload the reply must equal (echo: sbuf itself) */
    unsigned char *rbuf;
    size_t rcap, rlen;
    unsigned char mask[4];
    uint64_t t_sent, seq;
};

struct worker {
    pthread_t tid;
    int ep, nconns, pending, active; /* pending: not yet READY/DEAD; active: busy conns */
    struct conn *conns;
    uint64_t t_start, t_end, deadline, requests, errors, timeouts, connected, sum_ns, max_ns;
    uint64_t hist[NBUCKETS];
};

static struct {
    int ws, size, nthreads, nconns;
    const char *path, *host;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    uint64_t duration_ns, max_requests;
    atomic_uint_fast64_t issued; /* -n: tickets handed out, so exactly n requests are sent */
    pthread_barrier_t barrier;
} g;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- latency histogram: bucket index <-> value (ns), < 1 % error at the bucket middle ---- */
static int bucket(uint64_t v) {
    if (v < 128) return (int)v;
    int e = 63 - __builtin_clzll(v); /* v in [2^e, 2^(e+1)), e >= 7 */
    int i = 128 + (e - 7) * 64 + (int)((v >> (e - 6)) - 64);
    return i < NBUCKETS ? i : NBUCKETS - 1;
}

static double bucket_mid(int i) {
    if (i < 128) return i;
    int e = (i - 128) / 64 + 7;
    uint64_t lo = (uint64_t)((i - 128) % 64 + 64) << (e - 6);
    return (double)lo + (double)(1ull << (e - 6)) / 2.0;
}

static double percentile_us(const uint64_t *h, uint64_t total, double q, uint64_t max_ns) {
    if (!total) return 0.0;
    uint64_t want = (uint64_t)(q * (double)total + 0.999999), seen = 0;
    for (int i = 0; i < NBUCKETS; i++)
        if ((seen += h[i]) >= want) {
            double v = bucket_mid(i);
            return (v > (double)max_ns ? (double)max_ns : v) / 1000.0;
        }
    return (double)max_ns / 1000.0;
}

/* ---- connection life ---------------------------------------------------------------------- */
static void watch(struct worker *w, struct conn *c, int op, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(w->ep, op, c->fd, &ev);
}

/* Count the error, close, forget: no reconnect (a failed connection stays a counted error). */
static void fail(struct worker *w, struct conn *c) {
    if (c->state == ST_DEAD) return;
    if (c->state != ST_READY) w->pending--;
    if (c->busy) { c->busy = 0; w->active--; }
    close(c->fd); /* closing removes it from the epoll set */
    c->fd = -1;
    c->state = ST_DEAD;
    w->errors++;
}

static void open_conn(struct worker *w, struct conn *c) {
    int one = 1;
    c->fd = socket(g.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->state = ST_CONNECTING;
    if (c->fd < 0) { fail(w, c); return; }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, (struct sockaddr *)&g.addr, g.addrlen) < 0 && errno != EINPROGRESS) {
        fail(w, c);
        return;
    }
    watch(w, c, EPOLL_CTL_ADD, EPOLLOUT); /* writable = connected (or failed: SO_ERROR says) */
}

/* Start the next request (stamp the sequence number, one write), unless -n is used up. */
static void send_next(struct worker *w, struct conn *c, uint64_t t) {
    if (g.max_requests && atomic_fetch_add(&g.issued, 1) >= g.max_requests) return;
    c->seq++;
    int k = g.size < 8 ? g.size : 8;
    for (int i = 0; i < k; i++) {
        c->payload[i] = (unsigned char)(c->seq >> (8 * i));
        if (g.ws) c->sbuf[c->hdrlen + i] = c->payload[i] ^ c->mask[i & 3];
    }
    c->busy = 1;
    w->active++;
    c->t_sent = t;
    ssize_t n = write(c->fd, c->sbuf, c->slen);
    if (n < 0 && errno != EAGAIN) { fail(w, c); return; }
    c->soff = n < 0 ? 0 : (size_t)n;
    if (c->soff < c->slen) watch(w, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT);
}

/* A whole, correct reply: record it and go on (replies after the deadline are not counted). */
static void complete(struct worker *w, struct conn *c) {
    uint64_t t = now_ns();
    c->busy = 0;
    w->active--;
    if (t > w->deadline) return;
    uint64_t lat = t - c->t_sent;
    w->hist[bucket(lat)]++;
    w->requests++;
    w->sum_ns += lat;
    if (lat > w->max_ns) w->max_ns = lat;
    send_next(w, c, t);
}

static void on_connected(struct worker *w, struct conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) { fail(w, c); return; }
    if (!g.ws) {
        c->state = ST_READY;
        w->pending--;
        w->connected++;
        watch(w, c, EPOLL_CTL_MOD, EPOLLIN);
        return;
    }
    char req[1024]; /* fixed key: any base64 of 16 bytes is valid (RFC 6455 4.1) */
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", g.path, g.host);
    if (n <= 0 || n >= (int)sizeof req || write(c->fd, req, (size_t)n) != n) { fail(w, c); return; }
    c->state = ST_UPGRADING;
    watch(w, c, EPOLL_CTL_MOD, EPOLLIN);
}

/* Send a pong with the ping's payload (masked, as every client frame must be). */
static int pong(struct conn *c, const unsigned char *data, size_t len) {
    unsigned char f[2 + 4 + 125];
    f[0] = 0x8A;
    f[1] = (unsigned char)(0x80 | len);
    memcpy(f + 2, c->mask, 4);
    for (size_t i = 0; i < len; i++) f[6 + i] = data[i] ^ c->mask[i & 3];
    if (c->soff < c->slen) return -1; /* a request is half written: cannot interleave */
    return write(c->fd, f, 6 + len) == (ssize_t)(6 + len) ? 0 : -1;
}

/* Parse the whole frames in rbuf (header 2-14 bytes); returns -1 on anything unexpected. */
static int ws_frames(struct worker *w, struct conn *c) {
    while (c->rlen >= 2) {
        unsigned char *b = c->rbuf;
        int op = b[0] & 0x0f, fin = b[0] & 0x80, len7 = b[1] & 0x7f;
        size_t hl = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
        if ((b[0] & 0x70) || (b[1] & 0x80)) return -1; /* RSV bits, or a masked server frame */
        if (c->rlen < hl) return 0;
        uint64_t plen = (uint64_t)len7;
        if (len7 == 126) plen = ((uint64_t)b[2] << 8) | b[3];
        if (len7 == 127)
            for (int i = 0; i < 8; i++) plen = (plen << 8) | b[2 + i];
        if (op >= 8) {
            if (!fin || plen > 125) return -1;
        } else if (!fin || (op != 1 && op != 2) || plen != (uint64_t)g.size || !c->busy) {
            return -1; /* fragmented, continuation, wrong length, or a reply nobody asked for */
        }
        if (c->rlen < hl + plen) return 0; /* rcap holds a reply plus a control frame */
        int done = 0;
        if (op == 9 && pong(c, b + hl, (size_t)plen) < 0) return -1;
        if (op == 8) return -1; /* the server closed the WebSocket */
        if (op < 8) {
            if (memcmp(b + hl, c->payload, (size_t)plen) != 0) return -1;
            done = 1;
        }
        c->rlen -= hl + (size_t)plen;
        memmove(c->rbuf, c->rbuf + hl + plen, c->rlen);
        if (done) complete(w, c);
        if (c->state == ST_DEAD) return 0;
    }
    return 0;
}

/* Upgrade answer: "HTTP/1.1 101" and headers up to CRLFCRLF; bytes after it are frames. */
static void on_upgrade_data(struct worker *w, struct conn *c) {
    ssize_t n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) { fail(w, c); return; }
    c->rlen += (size_t)n;
    unsigned char *end = memmem(c->rbuf, c->rlen, "\r\n\r\n", 4);
    if (!end) {
        if (c->rlen == c->rcap) fail(w, c);
        return;
    }
    if (c->rlen < 12 || memcmp(c->rbuf, "HTTP/1.1 101", 12) != 0) { fail(w, c); return; }
    size_t used = (size_t)(end + 4 - c->rbuf);
    c->rlen -= used;
    memmove(c->rbuf, c->rbuf + used, c->rlen);
    c->state = ST_READY;
    w->pending--;
    w->connected++;
    if (ws_frames(w, c) < 0) fail(w, c);
}

static void on_reply_data(struct worker *w, struct conn *c) {
    /* echo: read at most what the outstanding reply still needs (never into the next one);
     * data while no request is outstanding is an error (read into the spare capacity) */
    size_t want = g.ws ? c->rcap - c->rlen : c->busy ? (size_t)g.size - c->rlen : c->rcap;
    ssize_t n = read(c->fd, c->rbuf + (g.ws || c->busy ? c->rlen : 0), want);
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0 || (!g.ws && !c->busy)) { fail(w, c); return; }
    c->rlen += (size_t)n;
    if (g.ws) {
        if (ws_frames(w, c) < 0) fail(w, c);
    } else if (c->rlen == (size_t)g.size) {
        c->rlen = 0;
        if (memcmp(c->rbuf, c->payload, (size_t)g.size) != 0) fail(w, c);
        else complete(w, c);
    }
}

static void on_event(struct worker *w, struct conn *c, uint32_t ev) {
    if (c->state == ST_CONNECTING) { on_connected(w, c); return; }
    if (c->state == ST_READY && (ev & EPOLLOUT) && c->soff < c->slen) {
        ssize_t n = write(c->fd, c->sbuf + c->soff, c->slen - c->soff);
        if (n < 0 && errno != EAGAIN) { fail(w, c); return; }
        if (n > 0) c->soff += (size_t)n;
        if (c->soff == c->slen) watch(w, c, EPOLL_CTL_MOD, EPOLLIN);
    }
    if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        if (c->state == ST_UPGRADING) on_upgrade_data(w, c);
        else if (c->state == ST_READY) on_reply_data(w, c);
    }
}

/* Buffers prepared once per connection: nothing is allocated per request. */
static void prepare(struct conn *c, int id) {
    uint32_t x = 2654435761u * (uint32_t)(id + 1);
    c->payload = malloc((size_t)g.size);
    for (int i = 0; i < g.size; i++) c->payload[i] = (unsigned char)('a' + (id + i) % 26);
    if (!g.ws) {
        c->sbuf = c->payload;
        c->slen = (size_t)g.size;
        c->rcap = (size_t)g.size;
    } else {
        unsigned char h[14];
        size_t hl = 2;
        h[0] = 0x82; /* FIN + binary */
        if (g.size < 126) {
            h[1] = (unsigned char)(0x80 | g.size);
        } else if (g.size < 65536) {
            h[1] = 0x80 | 126; h[2] = (unsigned char)(g.size >> 8); h[3] = (unsigned char)g.size; hl = 4;
        } else {
            h[1] = 0x80 | 127; hl = 10;
            for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)g.size >> (56 - 8 * i));
        }
        for (int i = 0; i < 4; i++) c->mask[i] = (unsigned char)(x >> (8 * i)) | 1;
        memcpy(h + hl, c->mask, 4);
        c->hdrlen = hl + 4;
        c->slen = c->hdrlen + (size_t)g.size;
        c->sbuf = malloc(c->slen);
        memcpy(c->sbuf, h, c->hdrlen);
        for (int i = 0; i < g.size; i++) c->sbuf[c->hdrlen + i] = c->payload[i] ^ c->mask[i & 3];
        c->rcap = 14 + (size_t)g.size + PING_ROOM;
        if (c->rcap < 8192) c->rcap = 8192; /* room for the upgrade answer's headers */
    }
    c->rbuf = malloc(c->rcap);
    if (!c->payload || !c->sbuf || !c->rbuf) { perror("cgen: malloc"); exit(1); }
}

static void *worker_main(void *arg) {
    struct worker *w = arg;
    struct epoll_event evs[256];
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->pending = w->nconns;
    for (int i = 0; i < w->nconns; i++) open_conn(w, &w->conns[i]);
    /* Phase 1: connect (and upgrade) everything, bounded by CONNECT_TIMEOUT_NS. */
    uint64_t cdl = now_ns() + CONNECT_TIMEOUT_NS;
    while (w->pending > 0 && now_ns() < cdl) {
        int n = epoll_wait(w->ep, evs, 256, 50);
        for (int i = 0; i < n; i++) on_event(w, evs[i].data.ptr, evs[i].events);
    }
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].state != ST_READY) fail(w, &w->conns[i]);
    /* The clock starts only after every thread's connections are connected/upgraded, so
     * connect and upgrade costs never count as request time (duration_s still includes them). */
    pthread_barrier_wait(&g.barrier);
    w->t_start = now_ns();
    w->deadline = w->t_start + g.duration_ns;
    for (int i = 0; i < w->nconns; i++)
        if (w->conns[i].state == ST_READY) send_next(w, &w->conns[i], now_ns());
    /* Phase 2: closed loop until the deadline, -n used up (nothing outstanding) or all failed.
     * epoll_wait wakes at least every 100 ms, so a hung server cannot hold us past it. */
    uint64_t t = now_ns();
    while (w->active > 0 && t < w->deadline) {
        uint64_t left_ms = (w->deadline - t) / 1000000 + 1;
        int n = epoll_wait(w->ep, evs, 256, left_ms < 100 ? (int)left_ms : 100);
        for (int i = 0; i < n; i++) on_event(w, evs[i].data.ptr, evs[i].events);
        t = now_ns();
    }
    w->t_end = t < w->deadline ? t : w->deadline;
    /* One request per connection is always in flight at the deadline: normal. One sent more
     * than STALL_NS ago is a server that stopped answering: count it. */
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->busy && t - c->t_sent > STALL_NS) w->timeouts++;
        if (c->fd >= 0) close(c->fd);
    }
    close(w->ep);
    return NULL;
}

static int loopback_address(const char *host, int port) {
    struct sockaddr_in *a4 = (struct sockaddr_in *)&g.addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&g.addr;
    memset(&g.addr, 0, sizeof g.addr);
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        g.addrlen = sizeof *a4;
        return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        g.addrlen = sizeof *a6;
        return IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    }
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: cgen -m echo|ws -H HOST -p PORT -c CONNS -t THREADS -s SIZE -d SECONDS"
                    " [-P /path] [-n MAX_REQUESTS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    uint64_t t0 = now_ns();
    int port = 0, opt;
    double seconds = 5.0;
    g.host = "127.0.0.1"; g.path = "/"; g.nconns = 100; g.nthreads = 1; g.size = 64;
    while ((opt = getopt(argc, argv, "m:H:p:c:t:s:d:P:n:")) != -1) {
        switch (opt) {
        case 'm':
            if (strcmp(optarg, "ws") && strcmp(optarg, "echo")) usage();
            g.ws = strcmp(optarg, "ws") == 0; break;
        case 'H': g.host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': g.nconns = atoi(optarg); break;
        case 't': g.nthreads = atoi(optarg); break;
        case 's': g.size = atoi(optarg); break;
        case 'd': seconds = atof(optarg); break;
        case 'P': g.path = optarg; break;
        case 'n': g.max_requests = strtoull(optarg, NULL, 10); break;
        default: usage();
        }
    }
    if (port <= 0 || port > 65535 || g.nconns < 1 || g.nthreads < 1 || g.size < 1 ||
        g.size > MAX_SIZE || !(seconds > 0) || strlen(g.path) > 512 || strlen(g.host) > 256)
        usage();
    if (!loopback_address(g.host, port)) {
        fprintf(stderr, "cgen: refusing %s: only loopback targets (127.0.0.0/8, ::1)\n", g.host);
        return 2;
    }
    if (g.nthreads > g.nconns) g.nthreads = g.nconns;
    g.duration_ns = (uint64_t)(seconds * 1e9);
    signal(SIGPIPE, SIG_IGN); /* a reset peer is a counted error, not a dead generator */

    struct worker *ws = calloc((size_t)g.nthreads, sizeof *ws);
    struct conn *conns = calloc((size_t)g.nconns, sizeof *conns);
    if (!ws || !conns) { perror("cgen: calloc"); return 1; }
    for (int i = 0; i < g.nconns; i++) prepare(&conns[i], i);
    pthread_barrier_init(&g.barrier, NULL, (unsigned)g.nthreads);
    for (int i = 0, first = 0; i < g.nthreads; i++) { /* CONNS split as evenly as possible */
        ws[i].nconns = g.nconns / g.nthreads + (i < g.nconns % g.nthreads);
        ws[i].conns = conns + first;
        first += ws[i].nconns;
        if (pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) != 0) {
            perror("cgen: pthread_create");
            return 1;
        }
    }
    static uint64_t hist[NBUCKETS];
    uint64_t requests = 0, errors = 0, timeouts = 0, connected = 0, sum_ns = 0, max_ns = 0, start = UINT64_MAX, end = 0;
    for (int i = 0; i < g.nthreads; i++) { /* merge the threads' figures */
        pthread_join(ws[i].tid, NULL);
        struct worker *w = &ws[i];
        for (int b = 0; b < NBUCKETS; b++) hist[b] += w->hist[b];
        requests += w->requests; errors += w->errors + w->timeouts; timeouts += w->timeouts; connected += w->connected; sum_ns += w->sum_ns;
        if (w->max_ns > max_ns) max_ns = w->max_ns;
        if (w->t_start < start) start = w->t_start;
        if (w->t_end > end) end = w->t_end;
    }
    double measured = end > start ? (double)(end - start) / 1e9 : 0.0;
    printf("rps=%.1f requests=%llu p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "mean_us=%.1f errors=%llu timeouts=%llu duration_s=%.3f measured_s=%.3f connections=%d connected=%llu "
           "threads=%d mode=%s size=%d\n",
           measured > 0 ? (double)requests / measured : 0.0, (unsigned long long)requests,
           percentile_us(hist, requests, 0.50, max_ns), percentile_us(hist, requests, 0.90, max_ns),
           percentile_us(hist, requests, 0.99, max_ns), percentile_us(hist, requests, 0.999, max_ns),
           (double)max_ns / 1000.0, requests ? (double)sum_ns / (double)requests / 1000.0 : 0.0,
           (unsigned long long)errors, (unsigned long long)timeouts, (double)(now_ns() - t0) / 1e9, measured, g.nconns,
           (unsigned long long)connected, g.nthreads, g.ws ? "ws" : "echo", g.size);
    for (int i = 0; i < g.nconns; i++) {
        if (g.ws) free(conns[i].sbuf);
        free(conns[i].payload);
        free(conns[i].rbuf);
    }
    free(conns);
    free(ws);
    return 0;
}
