/*
 * loadgen: the bench's HTTP/1.1 load client. One thread, epoll, non-blocking sockets, bodies read
 * into one large scratch buffer and discarded, so the client costs far less CPU than the server it
 * measures (wrk reads 8 KiB at a time and saturates near 1 GB/s on this kind of machine).
 *
 * Compiled by bench/run.ts at bench time: cc -O2 -o <tmp>/loadgen bench/loadgen.c
 *
 * Usage:
 *   loadgen --port P --path /x [--host 127.0.0.1] [--method GET|HEAD] [--header 'Name: value']...
 *           --conns N (--duration S | --requests K) [--rate BYTES_PER_SEC [--step BYTES]] [--buf BYTES]
 *           [--timeout S]
 *   --requests K   each connection makes K requests, then closes (total N*K)
 *   --duration S   each connection repeats requests until S seconds have passed; bytes of a
 *                  response still running at the deadline count up to the deadline
 *   --rate R       each connection reads at most R bytes per second (a slow tablet)
 *   --timeout S    give up on everything still running after S seconds (default 600)
 *
 * Herd mode (scenario 5: tablets asking the instant a meeting starts):
 *   --retry-status 404,503  such an answer, a failed connection or a cut body is not counted:
 *                  the connection closes and asks again after --retry-delay ms (default 100)
 *                  until --timeout
 *   --expect FILE  compare every body byte with FILE (chunked bodies de-framed first)
 *   --per-conn     also print one record per connection: its last response's status, bytes,
 *                  whether they matched, whether the body ended cleanly, attempts, and wall-clock
 *                  ms (Unix epoch, like Date.now()) of its headers and first body byte
 *
 * Prints one JSON object on stdout: requests completed, errors, body bytes, seconds, status counts,
 * latency percentiles (request written -> last body byte) and time to first byte.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { ST_IDLE, ST_CONNECTING, ST_SENDING, ST_HEADERS, ST_BODY, ST_DONE };
enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED, BODY_UNTIL_CLOSE };
enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER };

struct conn {
  int fd;
  enum state state;
  enum body_kind body;
  enum chunk_state chunk;
  size_t sent;
  char head[16384];
  size_t head_len;
  long long remaining; /* BODY_LENGTH: bytes left; BODY_CHUNKED: bytes left in this chunk */
  char line[128];
  size_t line_len;
  int keep_alive;
  int requests_done;
  double request_started;
  int first_byte_seen;
  /* rate limiting */
  double rate_started;
  long long rate_bytes;
  double wake_at; /* > 0 while sleeping */
  /* herd mode */
  double retry_at; /* > 0 while waiting to ask again */
  int status;
  int attempts;
  int streamed; /* no Content-Length */
  int clean;    /* the last response's body ended as framed */
  int matches;
  long long body_offset;
  double connect_started, connected_at, headers_at, first_body_at, done_at, last_retry_at;
};

static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static const char *opt_path = "/";
static const char *opt_method = "GET";
static char opt_headers[8192] = "";
static int opt_conns = 1;
static double opt_duration = 0;
static int opt_requests = 0;
static double opt_rate = 0;
static size_t opt_buf = 1 << 20;
/* With --rate: the smallest read, taken when the rate allows it (--step 8192 --rate 32768: 8 KiB every 0.25 s). */
static double opt_step = 16384;
static double opt_timeout = 600;
static int retry_status[600];
static int opt_retry = 0;
static double opt_retry_delay = 0.1;
static const unsigned char *expected;
static long long expected_len = -1;
static int opt_per_conn = 0;
static double wall_offset; /* CLOCK_REALTIME - CLOCK_MONOTONIC, seconds */

static char request_text[16384];
static size_t request_len;
static unsigned char *scratch;
static struct conn *conns;
static int epfd;
static double started_at, deadline;

#include <sys/mman.h>
#include <sys/stat.h>

static long long total_bytes, completed, errors, statuses[600];
static double *latencies, *ttfbs;
static size_t latency_count, latency_cap, ttfb_count, ttfb_cap;
static int active;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void push(double **values, size_t *count, size_t *cap, double value) {
  if (*count == *cap) {
    *cap = *cap ? *cap * 2 : 4096;
    *values = realloc(*values, *cap * sizeof(double));
    if (!*values) {
      perror("realloc");
      exit(2);
    }
  }
  (*values)[(*count)++] = value;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(double *values, size_t count, double p) {
  if (count == 0) return 0;
  size_t index = (size_t)(p * (count - 1) + 0.5);
  return values[index];
}

static int want_more(struct conn *c, double now) {
  if (opt_requests > 0) return c->requests_done < opt_requests;
  return now < deadline;
}

static void watch(struct conn *c, uint32_t events, int op) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(epfd, op, c->fd, &ev);
}

static void close_conn(struct conn *c) {
  if (c->fd >= 0) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
}

static void finish_conn(struct conn *c) {
  close_conn(c);
  if (c->state != ST_DONE) {
    c->state = ST_DONE;
    active--;
  }
}

static void start_request(struct conn *c, double now);

static void open_conn(struct conn *c, double now) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    perror("socket");
    exit(2);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(opt_port)};
  inet_pton(AF_INET, opt_host, &addr.sin_addr);
  c->fd = fd;
  c->status = 0;
  c->connected_at = 0;
  c->connect_started = now;
  c->attempts++;
  c->rate_started = now;
  c->rate_bytes = 0;
  c->wake_at = 0;
  int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  if (rc < 0 && errno != EINPROGRESS) {
    errors++;
    finish_conn(c);
    return;
  }
  c->state = ST_CONNECTING;
  watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void start_request(struct conn *c, double now) {
  c->state = ST_SENDING;
  c->sent = 0;
  c->head_len = 0;
  c->line_len = 0;
  c->first_byte_seen = 0;
  c->request_started = now;
  c->body_offset = 0;
  c->matches = 1;
  c->clean = 0;
  c->headers_at = 0;
  c->first_body_at = 0;
  watch(c, EPOLLOUT, EPOLL_CTL_MOD);
}

/* The response is complete: record it and start the next request, reconnecting if needed. */
static void schedule_retry(struct conn *c, double now) {
  close_conn(c);
  c->last_retry_at = now;
  if (now + opt_retry_delay >= deadline) {
    finish_conn(c);
    return;
  }
  c->state = ST_IDLE;
  c->retry_at = now + opt_retry_delay;
}

static void response_done(struct conn *c, double now) {
  c->clean = 1;
  c->done_at = now;
  if (opt_retry && retry_status[c->status]) {
    schedule_retry(c, now);
    return;
  }
  completed++;
  c->requests_done++;
  push(&latencies, &latency_count, &latency_cap, (now - c->request_started) * 1000);
  if (!want_more(c, now)) {
    finish_conn(c);
    return;
  }
  if (!c->keep_alive || c->body == BODY_UNTIL_CLOSE) {
    close_conn(c);
    open_conn(c, now);
    return;
  }
  start_request(c, now);
}

static void fail(struct conn *c, double now) {
  errors++;
  c->done_at = now;
  if (opt_retry) {
    schedule_retry(c, now);
    return;
  }
  close_conn(c);
  if (want_more(c, now) && opt_duration > 0) open_conn(c, now);
  else finish_conn(c);
}

static const char *find_header(const char *head, const char *name) {
  size_t len = strlen(name);
  for (const char *p = strstr(head, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
    if (strncasecmp(p + 2, name, len) == 0 && p[2 + len] == ':') {
      const char *v = p + 3 + len;
      while (*v == ' ' || *v == '\t') v++;
      return v;
    }
  }
  return NULL;
}

/* Parses the header block in c->head (NUL-terminated at its end); returns -1 on garbage. */
static int parse_head(struct conn *c) {
  int status = 0;
  if (sscanf(c->head, "HTTP/1.%*d %d", &status) != 1 || status < 100 || status > 599) return -1;
  statuses[status]++;
  c->status = status;
  const char *te = find_header(c->head, "transfer-encoding");
  const char *cl = find_header(c->head, "content-length");
  const char *conn = find_header(c->head, "connection");
  c->keep_alive = !(conn && strncasecmp(conn, "close", 5) == 0) && strncmp(c->head, "HTTP/1.0", 8) != 0;
  if (strcmp(opt_method, "HEAD") == 0 || status == 304 || status == 204 || status < 200) {
    c->body = BODY_NONE;
  } else if (te && strncasecmp(te, "chunked", 7) == 0) {
    c->body = BODY_CHUNKED;
    c->streamed = 1;
    c->chunk = CH_SIZE;
    c->line_len = 0;
  } else if (cl) {
    c->streamed = 0;
    c->body = BODY_LENGTH;
    c->remaining = atoll(cl);
  } else {
    c->body = BODY_UNTIL_CLOSE;
    c->streamed = 1;
    c->keep_alive = 0;
  }
  return 0;
}

/* Payload bytes (framing removed): compared with --expect, first one timed. */
static void deliver(struct conn *c, const unsigned char *data, size_t len, double now) {
  if (len == 0) return;
  if (c->first_body_at == 0) c->first_body_at = now;
  if (expected_len >= 0 && c->matches) {
    if (c->body_offset + (long long)len > expected_len || memcmp(expected + c->body_offset, data, len) != 0) c->matches = 0;
  }
  c->body_offset += (long long)len;
}

/* Consumes body bytes; returns 1 when the response body is complete, -1 on a framing error. */
static int consume_body(struct conn *c, const unsigned char *data, size_t len, double now) {
  size_t i = 0;
  if (c->body != BODY_CHUNKED) deliver(c, data, len, now);
  if (c->body == BODY_LENGTH) {
    c->remaining -= (long long)len;
    if (c->remaining < 0) return -1;
    return c->remaining == 0;
  }
  if (c->body == BODY_UNTIL_CLOSE) return 0;
  while (i < len) {
    switch (c->chunk) {
      case CH_SIZE:
      case CH_TRAILER: {
        unsigned char ch = data[i++];
        if (ch != '\n') {
          if (c->line_len < sizeof c->line - 1) c->line[c->line_len++] = (char)ch;
          break;
        }
        if (c->line_len > 0 && c->line[c->line_len - 1] == '\r') c->line_len--;
        c->line[c->line_len] = 0;
        if (c->chunk == CH_TRAILER) {
          if (c->line_len == 0) return 1;
          c->line_len = 0;
          break;
        }
        char *end;
        long long size = strtoll(c->line, &end, 16);
        if (end == c->line || size < 0) return -1;
        c->line_len = 0;
        if (size == 0) c->chunk = CH_TRAILER;
        else {
          c->remaining = size;
          c->chunk = CH_DATA;
        }
        break;
      }
      case CH_DATA: {
        size_t take = len - i < (size_t)c->remaining ? len - i : (size_t)c->remaining;
        deliver(c, data + i, take, now);
        c->remaining -= (long long)take;
        i += take;
        if (c->remaining == 0) {
          c->chunk = CH_DATA_CRLF;
          c->line_len = 0;
        }
        break;
      }
      case CH_DATA_CRLF:
        if (data[i++] == '\n') c->chunk = CH_SIZE;
        break;
    }
  }
  return 0;
}

static void count_bytes(struct conn *c, size_t n, double now) {
  /* After the deadline, bytes no longer count: the window is what we measure. */
  if (opt_duration > 0 && now > deadline) return;
  total_bytes += (long long)n;
  (void)c;
}

static void on_readable(struct conn *c, double now) {
  for (;;) {
    size_t want = opt_buf;
    if (opt_rate > 0 && c->state == ST_BODY) {
      double allowed = opt_rate * (now - c->rate_started) - (double)c->rate_bytes;
      if (allowed < 1) {
        c->wake_at = c->rate_started + (c->rate_bytes + opt_step) / opt_rate;
        watch(c, 0, EPOLL_CTL_MOD);
        return;
      }
      if ((double)want > allowed) want = allowed < opt_step ? opt_step : (size_t)allowed;
    }
    ssize_t n = recv(c->fd, scratch, want, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      fail(c, now);
      return;
    }
    if (n == 0) {
      if (c->state == ST_BODY && c->body == BODY_UNTIL_CLOSE) {
        response_done(c, now);
        return;
      }
      /* A keep-alive connection the server closed between responses: reconnect. */
      if (c->state == ST_HEADERS && c->head_len == 0 && c->requests_done > 0) {
        close_conn(c);
        open_conn(c, now);
        return;
      }
      fail(c, now);
      return;
    }
    if (!c->first_byte_seen) {
      c->first_byte_seen = 1;
      push(&ttfbs, &ttfb_count, &ttfb_cap, (now - c->request_started) * 1000);
    }
    c->rate_bytes += n;
    size_t offset = 0;
    if (c->state == ST_HEADERS) {
      size_t room = sizeof c->head - 1 - c->head_len;
      size_t take = (size_t)n < room ? (size_t)n : room;
      memcpy(c->head + c->head_len, scratch, take);
      size_t scan_from = c->head_len > 3 ? c->head_len - 3 : 0;
      c->head_len += take;
      c->head[c->head_len] = 0;
      char *end = memmem(c->head + scan_from, c->head_len - scan_from, "\r\n\r\n", 4);
      if (!end) {
        if (c->head_len == sizeof c->head - 1) fail(c, now);
        continue;
      }
      size_t head_bytes = (size_t)(end - c->head) + 4;
      end[2] = 0;
      if (parse_head(c) < 0) {
        fail(c, now);
        return;
      }
      offset = head_bytes - (c->head_len - take);
      c->state = ST_BODY;
      c->headers_at = now;
      if (c->body == BODY_NONE || (c->body == BODY_LENGTH && c->remaining == 0)) {
        if (offset != (size_t)n) {
          fail(c, now);
          return;
        }
        response_done(c, now);
        return;
      }
    }
    size_t body_bytes = (size_t)n - offset;
    count_bytes(c, body_bytes, now);
    int rc = consume_body(c, scratch + offset, body_bytes, now);
    if (rc < 0) {
      fail(c, now);
      return;
    }
    if (rc == 1) {
      response_done(c, now);
      return;
    }
  }
}

static void on_writable(struct conn *c, double now) {
  if (c->state == ST_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fail(c, now);
      return;
    }
    c->connected_at = now;
    start_request(c, now);
  }
  while (c->sent < request_len) {
    ssize_t n = send(c->fd, request_text + c->sent, request_len - c->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN) return;
      fail(c, now);
      return;
    }
    c->sent += (size_t)n;
  }
  c->state = ST_HEADERS;
  c->head_len = 0;
  watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
}

static void usage(void) {
  fprintf(stderr, "usage: loadgen --port P --path /x --conns N (--duration S | --requests K) [--rate B/s] [--method M] [--header H]...\n");
  exit(2);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) usage();
    if (!strcmp(a, "--host")) opt_host = v;
    else if (!strcmp(a, "--port")) opt_port = atoi(v);
    else if (!strcmp(a, "--path")) opt_path = v;
    else if (!strcmp(a, "--method")) opt_method = v;
    else if (!strcmp(a, "--header")) {
      strncat(opt_headers, v, sizeof opt_headers - strlen(opt_headers) - 3);
      strcat(opt_headers, "\r\n");
    } else if (!strcmp(a, "--conns")) opt_conns = atoi(v);
    else if (!strcmp(a, "--duration")) opt_duration = atof(v);
    else if (!strcmp(a, "--requests")) opt_requests = atoi(v);
    else if (!strcmp(a, "--rate")) opt_rate = atof(v);
    else if (!strcmp(a, "--buf")) opt_buf = (size_t)atoll(v);
    else if (!strcmp(a, "--step")) opt_step = atof(v);
    else if (!strcmp(a, "--timeout")) opt_timeout = atof(v);
    else if (!strcmp(a, "--retry-status")) {
      opt_retry = 1;
      for (char *p = (char *)v; *p;) {
        int code = (int)strtol(p, &p, 10);
        if (code > 0 && code < 600) retry_status[code] = 1;
        if (*p) p++;
      }
    } else if (!strcmp(a, "--retry-delay")) opt_retry_delay = atof(v) / 1000;
    else if (!strcmp(a, "--expect")) {
      int fd = open(v, O_RDONLY);
      struct stat st;
      if (fd < 0 || fstat(fd, &st) < 0) {
        perror(v);
        return 2;
      }
      expected_len = st.st_size;
      expected = st.st_size ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : (const unsigned char *)"";
      if (expected == MAP_FAILED) {
        perror("mmap");
        return 2;
      }
      close(fd);
    } else if (!strcmp(a, "--per-conn")) {
      opt_per_conn = atoi(v);
    }
    else usage();
    i++;
  }
  if (opt_port <= 0 || opt_conns <= 0 || (opt_duration <= 0 && opt_requests <= 0)) usage();
  request_len = (size_t)snprintf(request_text, sizeof request_text, "%s %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: meeting-edge-bench\r\n%s\r\n",
                                 opt_method, opt_path, opt_host, opt_port, opt_headers);
  scratch = malloc(opt_buf);
  conns = calloc((size_t)opt_conns, sizeof *conns);
  epfd = epoll_create1(0);
  if (!scratch || !conns || epfd < 0) {
    perror("setup");
    return 2;
  }
  started_at = now_s();
  struct timespec wall;
  clock_gettime(CLOCK_REALTIME, &wall);
  wall_offset = wall.tv_sec + wall.tv_nsec / 1e9 - started_at;
  deadline = started_at + (opt_duration > 0 ? opt_duration : opt_timeout);
  double hard_stop = started_at + (opt_duration > 0 ? opt_duration + 30 : opt_timeout);
  active = opt_conns;
  for (int i = 0; i < opt_conns; i++) {
    conns[i].fd = -1;
    open_conn(&conns[i], started_at);
  }
  struct epoll_event events[512];
  int timed_out = 0;
  while (active > 0) {
    double now = now_s();
    if (now > hard_stop) {
      timed_out = 1;
      break;
    }
    double next_wake = hard_stop;
    for (int i = 0; i < opt_conns && opt_retry; i++) {
      struct conn *c = &conns[i];
      if (c->retry_at <= 0) continue;
      if (c->retry_at <= now) {
        c->retry_at = 0;
        open_conn(c, now);
      } else if (c->retry_at < next_wake) {
        next_wake = c->retry_at;
      }
    }
    for (int i = 0; i < opt_conns && opt_rate > 0; i++) {
      struct conn *c = &conns[i];
      if (c->wake_at <= 0) continue;
      if (c->wake_at <= now) {
        c->wake_at = 0;
        watch(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
      } else if (c->wake_at < next_wake) {
        next_wake = c->wake_at;
      }
    }
    if (opt_duration > 0 && now < deadline && deadline < next_wake) next_wake = deadline;
    int timeout_ms = (int)((next_wake - now) * 1000) + 1;
    if (timeout_ms > 1000) timeout_ms = 1000;
    int n = epoll_wait(epfd, events, 512, timeout_ms);
    now = now_s();
    for (int i = 0; i < n; i++) {
      struct conn *c = events[i].data.ptr;
      /* Herd mode times each tablet's first byte: read the clock per event, not per batch. */
      if (opt_retry && i > 0) now = now_s();
      if (c->fd < 0 || c->state == ST_DONE) continue;
      if (events[i].events & EPOLLOUT) on_writable(c, now);
      else if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c, now);
    }
    /* Duration mode: at the deadline every connection stops, mid-response or not. */
    if (opt_duration > 0 && now >= deadline) {
      for (int i = 0; i < opt_conns; i++) finish_conn(&conns[i]);
    }
  }
  double seconds = (opt_duration > 0 && !timed_out ? deadline : now_s()) - started_at;
  for (int i = 0; i < opt_conns; i++) close_conn(&conns[i]);
  qsort(latencies, latency_count, sizeof(double), cmp_double);
  qsort(ttfbs, ttfb_count, sizeof(double), cmp_double);
  printf("{\"completed\":%lld,\"errors\":%lld,\"unfinished\":%d,\"timedOut\":%s,\"bytes\":%lld,\"seconds\":%.6f,\"status\":{",
         completed, errors, timed_out ? active : 0, timed_out ? "true" : "false", total_bytes, seconds);
  int first = 1;
  for (int s = 0; s < 600; s++) {
    if (!statuses[s]) continue;
    printf("%s\"%d\":%lld", first ? "" : ",", s, statuses[s]);
    first = 0;
  }
  printf("},\"latencyMs\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"ttfbMs\":{\"p50\":%.3f,\"p99\":%.3f,\"max\":%.3f}}\n",
         percentile(latencies, latency_count, 0.5), percentile(latencies, latency_count, 0.9), percentile(latencies, latency_count, 0.99),
         latency_count ? latencies[latency_count - 1] : 0, percentile(ttfbs, ttfb_count, 0.5), percentile(ttfbs, ttfb_count, 0.99),
         ttfb_count ? ttfbs[ttfb_count - 1] : 0);
  if (opt_per_conn) {
    /* One line per connection after the summary line, so the summary's shape stays the same. */
#define WALL_MS(t) ((t) > 0 ? ((t) + wall_offset) * 1000 : 0)
    printf("[");
    for (int i = 0; i < opt_conns; i++) {
      struct conn *c = &conns[i];
      printf("%s{\"status\":%d,\"bytes\":%lld,\"matches\":%s,\"complete\":%s,\"streamed\":%s,\"attempts\":%d,"
             "\"connectMs\":%.3f,\"requestToHeadersMs\":%.3f,\"headersAt\":%.3f,\"firstByteAt\":%.3f,\"doneAt\":%.3f,\"lastRetryAt\":%.3f}",
             i ? "," : "", c->status, c->body_offset, expected_len < 0 ? "null" : (c->matches && c->body_offset == expected_len ? "true" : "false"),
             c->clean ? "true" : "false", c->streamed ? "true" : "false", c->attempts,
             c->connected_at > 0 ? (c->connected_at - c->connect_started) * 1000 : -1,
             c->headers_at > 0 ? (c->headers_at - c->request_started) * 1000 : -1, WALL_MS(c->headers_at), WALL_MS(c->first_body_at),
             WALL_MS(c->done_at), WALL_MS(c->last_retry_at));
    }
    printf("]\n");
  }
  return 0;
}
