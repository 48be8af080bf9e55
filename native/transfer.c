/*
 * Response bodies sent by the event loop itself, nginx's way: once JavaScript has written a
 * response's headers, the body (a byte range of an open package file) is handed over here, and
 * JavaScript lets go of the connection. What one such response then costs is this file's small
 * struct and a descriptor, instead of a net.Socket, an HTTP parser, the request and response
 * objects, the pump and their native state (see bench/README.md, "Where the memory goes").
 *
 *   startTransfer(socketFd, fileFd, offset, length, idleTimeoutMs, onDone) -> id (> 0) or -errno
 *   transferProgress() -> Float64Array [id, bytesSent, id, bytesSent, ...] of transfers not done
 *   abortTransfer(id) -> whether it was running (its onDone is called, outcome ABORTED)
 *
 * startTransfer dup()s the socket, so the connection outlives the caller closing its own
 * descriptor; the file descriptor stays the caller's, read by position only, and must stay open
 * until onDone(bytesSent, outcome, errno) is called, once, when the body is complete (every byte
 * handed to the kernel) or given up. It tries sendfile(2) at once: when the kernel refuses it for
 * this file or socket (EINVAL, ENOSYS, EOPNOTSUPP) before any byte went, it returns -errno and
 * keeps nothing, so the caller can still send the body itself.
 *
 * - Writes: a uv_poll_t (UV_WRITABLE) per transfer on the Node event loop; each wake-up sends with
 *   an explicit offset until EAGAIN or MAX_PER_WAKE bytes, whichever is first, so one fast client
 *   cannot hold the loop (the poll is level-triggered: a socket with room wakes again next turn).
 * - Cold files: sendfile reads the page cache and waits for the disk on a miss, as nginx does
 *   without aio; MAX_PER_WAKE bounds what one wake-up can wait for.
 * - Idle timeout: one uv_timer for every transfer of the addon instance, ticking at a quarter of
 *   the shortest idle timeout (10 ms to 1 s): a transfer with no byte accepted by the kernel for its
 *   idleTimeoutMs is closed (outcome IDLE).
 * - End: with no unread input the descriptor is closed at once (the kernel still delivers what it
 *   holds, then FIN). With input pending, close() would send RST and the peer could lose the
 *   body's tail, so the socket is shut down for writing and its input read and dropped until EOF or
 *   LINGER_MS (nginx's lingering close). onDone is called before that linger, the body complete.
 * - Errors: EPIPE, ECONNRESET, ENOTCONN or a poll error: the peer is gone (PEER_GONE); sendfile
 *   returning 0 before the range's end: the file is shorter than promised (SHORT_FILE); anything
 *   else ERROR with its errno.
 *
 * State lives per addon instance (napi_set_instance_data): no mutable globals.
 */
#define _GNU_SOURCE
#include "napi-values.h"
#include "transfer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

enum outcome {
  OUTCOME_COMPLETE = 0,
  OUTCOME_PEER_GONE = 1,
  OUTCOME_IDLE = 2,
  OUTCOME_SHORT_FILE = 3,
  OUTCOME_ERROR = 4,
  OUTCOME_ABORTED = 5,
  /* Not an outcome: the socket is full (wait for it) or this wake-up's share is used. */
  STEP_WAIT = -1,
};

#define MAX_PER_WAKE (1024 * 1024)
#define LINGER_MS 5000
#define LINGER_READ_BYTES 4096
#define MIN_TICK_MS 10
#define MAX_TICK_MS 1000

typedef struct transfers transfers;

typedef struct transfer {
  uv_poll_t poll;
  transfers *owner;
  struct transfer *prev, *next;
  /* The JS callback; NULL once called (or for a transfer that is only lingering). */
  napi_ref on_done;
  uint32_t id;
  int socket_fd;
  int file_fd;
  int64_t position, end, sent;
  uint64_t idle_ms, last_progress_ms, linger_until_ms;
  int error;
  bool lingering;
} transfer;

struct transfers {
  napi_env env;
  uv_loop_t *loop;
  /* Heap-allocated: it must outlive the instance until its close callback. */
  uv_timer_t *timer;
  uint64_t tick_ms;
  napi_ref resource;
  napi_async_context async_context;
  transfer *head;
  uint32_t next_id;
};

static void link_transfer(transfers *all, transfer *t) {
  t->prev = NULL;
  t->next = all->head;
  if (all->head) all->head->prev = t;
  all->head = t;
}

static void unlink_transfer(transfers *all, transfer *t) {
  if (t->prev) t->prev->next = t->next;
  else all->head = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
}

static void free_on_close(uv_handle_t *handle) { free(handle->data); }

/*
 * Stops watching (uv_close stops the poll and takes the descriptor out of epoll at once, so it is
 * closed after), closes the descriptor and unlinks; the struct is freed by the loop later.
 */
static void close_transfer(transfer *t) {
  uv_close((uv_handle_t *)&t->poll, free_on_close);
  close(t->socket_fd);
  t->socket_fd = -1;
  unlink_transfer(t->owner, t);
}

static void stop_timer_if_idle(transfers *all) {
  if (all->head == NULL && all->tick_ms != 0) {
    uv_timer_stop(all->timer);
    all->tick_ms = 0;
  }
}

/* Calls onDone(bytesSent, outcome, errno) once. The transfer must already be closed or lingering. */
static void report(transfer *t, int outcome) {
  napi_ref ref = t->on_done;
  if (ref == NULL) return;
  t->on_done = NULL;
  transfers *all = t->owner;
  napi_env env = all->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn, resource, argv[3], result;
  napi_get_reference_value(env, ref, &fn);
  napi_get_reference_value(env, all->resource, &resource);
  napi_create_double(env, (double)t->sent, &argv[0]);
  napi_create_int32(env, outcome, &argv[1]);
  napi_create_int32(env, t->error, &argv[2]);
  napi_delete_reference(env, ref);
  // make_callback, not call_function: it runs the microtasks and nextTicks the callback queues.
  if (fn != NULL && napi_make_callback(env, all->async_context, resource, fn, 3, argv, &result) == napi_pending_exception) {
    napi_value error;
    napi_get_and_clear_last_exception(env, &error);
    napi_fatal_exception(env, error);
  }
  napi_close_handle_scope(env, scope);
}

static void finish(transfer *t, int outcome) {
  close_transfer(t);
  report(t, outcome);
  stop_timer_if_idle(t->owner);
}

static int step(transfer *t) {
  int64_t budget = MAX_PER_WAKE;
  while (t->position < t->end) {
    int64_t left = t->end - t->position;
    size_t want = (size_t)(left < budget ? left : budget);
    off_t offset = (off_t)t->position;
    ssize_t n = sendfile(t->socket_fd, t->file_fd, &offset, want);
    if (n > 0) {
      t->position += n;
      t->sent += n;
      t->last_progress_ms = uv_now(t->owner->loop);
      budget -= n;
      // A short count: the socket buffer is full (or the file ends: the next call says so).
      if (budget <= 0 || (size_t)n < want) return STEP_WAIT;
      continue;
    }
    if (n == 0) return OUTCOME_SHORT_FILE;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return STEP_WAIT;
    t->error = errno;
    return errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN ? OUTCOME_PEER_GONE : OUTCOME_ERROR;
  }
  return OUTCOME_COMPLETE;
}

static void on_linger_readable(uv_poll_t *poll, int status, int events);

/* The body is complete: close, or linger first when the peer sent input we never read. */
static void complete(transfer *t) {
  int pending = 0;
  if (ioctl(t->socket_fd, FIONREAD, &pending) != 0 || pending == 0 || shutdown(t->socket_fd, SHUT_WR) != 0) {
    finish(t, OUTCOME_COMPLETE);
    return;
  }
  t->lingering = true;
  t->linger_until_ms = uv_now(t->owner->loop) + LINGER_MS;
  uv_poll_start(&t->poll, UV_READABLE, on_linger_readable);
  // The body is delivered: the wait for the peer's FIN must not keep a stopping process alive.
  uv_unref((uv_handle_t *)&t->poll);
  report(t, OUTCOME_COMPLETE);
}

static void on_linger_readable(uv_poll_t *poll, int status, int events) {
  (void)events;
  transfer *t = poll->data;
  char sink[LINGER_READ_BYTES];
  // At most 64 KiB per wake-up; input, EOF or an error ends the wait for the peer's FIN.
  for (int reads = 0; status == 0 && reads < 16; reads++) {
    ssize_t n = read(t->socket_fd, sink, sizeof sink);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    finish(t, OUTCOME_COMPLETE);
    return;
  }
  if (status != 0) finish(t, OUTCOME_COMPLETE);
}

static void on_writable(uv_poll_t *poll, int status, int events) {
  (void)events;
  transfer *t = poll->data;
  if (status < 0) {
    t->error = -status;
    finish(t, OUTCOME_PEER_GONE);
    return;
  }
  int outcome = step(t);
  if (outcome == STEP_WAIT) return;
  if (outcome == OUTCOME_COMPLETE) complete(t);
  else finish(t, outcome);
}

static void on_tick(uv_timer_t *timer) {
  transfers *all = timer->data;
  uint64_t now = uv_now(all->loop);
  // Expired transfers are closed and unlinked first, then reported: a callback that aborts other
  // transfers cannot reach one this loop still holds.
  transfer *expired = NULL;
  for (transfer *t = all->head, *next; t != NULL; t = next) {
    next = t->next;
    bool idle = !t->lingering && now - t->last_progress_ms >= t->idle_ms;
    if (!idle && !(t->lingering && now >= t->linger_until_ms)) continue;
    close_transfer(t);
    t->next = expired;
    expired = t;
  }
  for (transfer *t = expired; t != NULL; t = t->next) report(t, OUTCOME_IDLE);
  stop_timer_if_idle(all);
}

static void ensure_tick(transfers *all, uint64_t idle_ms) {
  uint64_t tick = idle_ms / 4;
  if (tick < MIN_TICK_MS) tick = MIN_TICK_MS;
  if (tick > MAX_TICK_MS) tick = MAX_TICK_MS;
  if (all->tick_ms != 0 && all->tick_ms <= tick) return;
  all->tick_ms = tick;
  uv_timer_start(all->timer, on_tick, tick, tick);
}

static void close_instance(napi_env env, void *data, void *hint) {
  (void)hint;
  transfers *all = data;
  while (all->head) {
    transfer *t = all->head;
    if (t->on_done) napi_delete_reference(env, t->on_done);
    t->on_done = NULL;
    close_transfer(t);
  }
  uv_timer_stop(all->timer);
  all->timer->data = all->timer;
  uv_close((uv_handle_t *)all->timer, free_on_close);
  napi_async_destroy(env, all->async_context);
  napi_delete_reference(env, all->resource);
  free(all);
}

static transfers *instance(napi_env env) {
  void *data = NULL;
  napi_get_instance_data(env, &data);
  if (data) return data;
  transfers *all = calloc(1, sizeof *all);
  uv_timer_t *timer = calloc(1, sizeof *timer);
  uv_loop_t *loop = NULL;
  napi_value resource, name;
  if (!all || !timer || napi_get_uv_event_loop(env, &loop) != napi_ok || napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "EdgeNetTransfer", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &all->async_context) != napi_ok) {
    free(all);
    free(timer);
    return NULL;
  }
  napi_create_reference(env, resource, 1, &all->resource);
  all->env = env;
  all->loop = loop;
  all->timer = timer;
  uv_timer_init(loop, timer);
  timer->data = all;
  // The timer alone must not keep the process alive; the transfers' polls do.
  uv_unref((uv_handle_t *)timer);
  all->next_id = 1;
  if (napi_set_instance_data(env, all, close_instance, NULL) != napi_ok) {
    timer->data = timer;
    uv_close((uv_handle_t *)timer, free_on_close);
    free(all);
    return NULL;
  }
  return all;
}

static napi_value StartTransfer(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int32_t socket_fd, file_fd;
  int64_t offset, length, idle_ms;
  napi_valuetype callback_type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6 || napi_get_value_int32(env, argv[0], &socket_fd) != napi_ok ||
      napi_get_value_int32(env, argv[1], &file_fd) != napi_ok || napi_get_value_int64(env, argv[2], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[3], &length) != napi_ok || napi_get_value_int64(env, argv[4], &idle_ms) != napi_ok ||
      napi_typeof(env, argv[5], &callback_type) != napi_ok || callback_type != napi_function || socket_fd < 0 || file_fd < 0 || offset < 0 ||
      length < 1 || idle_ms < 1) {
    return throw_type_error(env, "startTransfer(socketFd, fileFd, offset, length >= 1, idleTimeoutMs >= 1, onDone)");
  }
  transfers *all = instance(env);
  if (!all) return number(env, -ENOMEM);
  transfer *t = calloc(1, sizeof *t);
  if (!t) return number(env, -ENOMEM);
  t->socket_fd = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  if (t->socket_fd < 0) {
    int error = errno;
    free(t);
    return number(env, -error);
  }
  t->owner = all;
  t->file_fd = file_fd;
  t->position = offset;
  t->end = offset + length;
  t->idle_ms = (uint64_t)idle_ms;
  t->last_progress_ms = uv_now(all->loop);
  int first = step(t);
  if (first == OUTCOME_ERROR && t->sent == 0 && (t->error == EINVAL || t->error == ENOSYS || t->error == EOPNOTSUPP)) {
    close(t->socket_fd);
    int error = t->error;
    free(t);
    return number(env, -error);
  }
  // Whatever the first call found (done, full, an error) the first wake-up finds again.
  if (uv_poll_init_socket(all->loop, &t->poll, t->socket_fd) != 0) {
    close(t->socket_fd);
    free(t);
    return number(env, -EIO);
  }
  t->poll.data = t;
  napi_create_reference(env, argv[5], 1, &t->on_done);
  t->id = all->next_id++;
  if (all->next_id == 0 || all->next_id > (1u << 30)) all->next_id = 1;
  link_transfer(all, t);
  uv_poll_start(&t->poll, UV_WRITABLE, on_writable);
  ensure_tick(all, t->idle_ms);
  return number(env, t->id);
}

static napi_value TransferProgress(napi_env env, napi_callback_info info) {
  (void)info;
  transfers *all = instance(env);
  size_t count = 0;
  for (transfer *t = all ? all->head : NULL; t != NULL; t = t->next) count += t->on_done != NULL;
  void *data = NULL;
  napi_value buffer, array;
  napi_create_arraybuffer(env, count * 2 * sizeof(double), &data, &buffer);
  double *pairs = data;
  size_t i = 0;
  for (transfer *t = all ? all->head : NULL; t != NULL; t = t->next) {
    if (t->on_done == NULL) continue;
    pairs[i++] = t->id;
    pairs[i++] = (double)t->sent;
  }
  napi_create_typedarray(env, napi_float64_array, count * 2, buffer, 0, &array);
  return array;
}

static napi_value AbortTransfer(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  uint32_t id;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_uint32(env, argv[0], &id) != napi_ok) {
    return throw_type_error(env, "abortTransfer(id)");
  }
  transfers *all = instance(env);
  transfer *t = all ? all->head : NULL;
  while (t != NULL && t->id != id) t = t->next;
  napi_value result;
  napi_get_boolean(env, t != NULL && t->on_done != NULL, &result);
  if (t != NULL) finish(t, OUTCOME_ABORTED);
  return result;
}

void transfer_register(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "startTransfer", NAPI_AUTO_LENGTH, StartTransfer, NULL, &fn);
  napi_set_named_property(env, exports, "startTransfer", fn);
  napi_create_function(env, "transferProgress", NAPI_AUTO_LENGTH, TransferProgress, NULL, &fn);
  napi_set_named_property(env, exports, "transferProgress", fn);
  napi_create_function(env, "abortTransfer", NAPI_AUTO_LENGTH, AbortTransfer, NULL, &fn);
  napi_set_named_property(env, exports, "abortTransfer", fn);
}
