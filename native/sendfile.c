/*
 * sendfile(2) for Node, as one synchronous N-API function: the zero-copy path nginx uses for
 * static files. Node has no binding for it; copying through a Buffer costs a read() copy and a
 * write() copy per byte, which measured 2.4x nginx's CPU per GB at 64 clients.
 *
 *   sendfile(socketFd, fileFd, offset, count) -> bytes sent (>= 0) or -errno (< 0)
 *
 * The socket is libuv's, so non-blocking: the call returns as soon as the socket buffer is full
 * (-EAGAIN or a short count) and never waits for the client. It reads the file from the page
 * cache; a cold file makes it wait for the disk, which the caller measures (see zero-copy.ts).
 * Compiled by scripts/build.mjs; when it cannot be built the node copies through Buffers instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <sys/sendfile.h>
#include <sys/types.h>

static napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static napi_value Sendfile(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 4) {
    return throw_type_error(env, "sendfile(socketFd, fileFd, offset, count)");
  }
  int32_t out_fd, in_fd;
  int64_t offset, count;
  if (napi_get_value_int32(env, argv[0], &out_fd) != napi_ok || napi_get_value_int32(env, argv[1], &in_fd) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok || napi_get_value_int64(env, argv[3], &count) != napi_ok ||
      out_fd < 0 || in_fd < 0 || offset < 0 || count < 0) {
    return throw_type_error(env, "sendfile: fds, offset and count must be non-negative integers");
  }
  off_t off = (off_t)offset;
  ssize_t sent;
  do {
    sent = sendfile(out_fd, in_fd, &off, (size_t)count);
  } while (sent < 0 && errno == EINTR);
  napi_value result;
  napi_create_int64(env, sent < 0 ? -(int64_t)errno : (int64_t)sent, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "sendfile", NAPI_AUTO_LENGTH, Sendfile, NULL, &fn);
  napi_set_named_property(env, exports, "sendfile", fn);
  return exports;
}
