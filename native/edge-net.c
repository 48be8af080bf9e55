/*
 * Two socket calls Node has no binding for, as synchronous Node-API functions. Compiled by
 * scripts/build.mjs; when it cannot be built the node does without (see src/http/net-addon.ts).
 *
 *   sendfile(socketFd, fileFd, offset, count) -> bytes sent (>= 0) or -errno (< 0)
 *   accept(listenFd) -> a new connection's descriptor (>= 0) or -errno (< 0)
 *
 * sendfile(2) is the zero-copy path nginx uses for static files; copying through a Buffer costs a
 * read() copy and a write() copy per byte, which measured 2.4x nginx's CPU per GB at 64 clients.
 * The socket is libuv's, so non-blocking: the call returns as soon as the socket buffer is full
 * (-EAGAIN or a short count) and never waits for the client. It reads the file from the page
 * cache; a cold file makes it wait for the disk, which the caller measures (see zero-copy.ts).
 *
 * Response bodies sent by the event loop once JavaScript has let go of the connection
 * (startTransfer, transferProgress, abortTransfer) are transfer.c's.
 *
 * threadPreemptions() counts the event loop thread's preemptions; limitMallocArenas(count) caps glibc's malloc arenas; releaseIcuData(symbol) drops the pages of ICU's read-only data (see ReleaseIcuData below).
 *
 * accept4(2) on libuv's (non-blocking) listening socket drains a burst of connections in one turn
 * of the event loop, where libuv takes one per turn (see burst-accept.ts). The descriptor is
 * non-blocking and close-on-exec, as libuv's own. -EAGAIN: the queue is empty.
 */
#define _GNU_SOURCE
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <dlfcn.h>
#include <link.h>
#include <node_api.h>
#include "napi-values.h"
#include "transfer.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>


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

static napi_value Accept(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t listen_fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_int32(env, argv[0], &listen_fd) != napi_ok || listen_fd < 0) {
    return throw_type_error(env, "accept(listenFd): a non-negative integer");
  }
  int fd;
  do {
    fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  napi_value result;
  napi_create_int32(env, fd < 0 ? -errno : fd, &result);
  return result;
}

// Gives the pages malloc holds free back to the kernel (glibc's malloc_trim(0) also releases free
// pages inside its heaps, not only at their top). Returns whether any memory was released;
// false where the C library has no such call.
static napi_value TrimMemory(napi_env env, napi_callback_info info) {
  (void)info;
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}

// Involuntary context switches of the calling thread, the event loop's (getrusage RUSAGE_THREAD):
// file-pump.ts tells a call that waited off the CPU from one whose thread was preempted, and the
// whole process's count also rises when any of V8's or libuv's threads is preempted. -errno on
// failure.
static napi_value ThreadPreemptions(napi_env env, napi_callback_info info) {
  (void)info;
  struct rusage usage;
  return number(env, getrusage(RUSAGE_THREAD, &usage) == 0 ? (double)usage.ru_nivcsw : -(double)errno);
}

// Caps glibc's malloc arenas (mallopt M_ARENA_MAX, as the MALLOC_ARENA_MAX variable does) for the
// threads that allocate from now on. Returns whether the C library took it.
static napi_value LimitMallocArenas(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t count = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_int32(env, argv[0], &count) != napi_ok || count < 1) {
    return throw_type_error(env, "limitMallocArenas(count): count must be an integer >= 1");
  }
  int taken = 0;
#ifdef __GLIBC__
  taken = mallopt(M_ARENA_MAX, count);
#endif
  napi_value result;
  napi_get_boolean(env, taken == 1, &result);
  return result;
}

// Drops the pages of ICU's data (the read-only symbol `symbol`, e.g. "icudt78_dat", in the node
// binary or in libicudata) from this process's memory: madvise(MADV_DONTNEED) on the whole pages
// inside it. The first Intl object makes V8 list the locales ICU has (a static cache, built once),
// which reads a page or two of each of ~800 locales' data, ~5-6 MiB; the node itself formats in
// en-US only. The pages are read-only file pages, never written: a page read again is mapped
// back from the page cache on its next touch, so this changes what is resident, never what is
// read. Returns the bytes advised, 0 when the symbol is not there (a build without ICU data in
// it), or -errno.
static napi_value ReleaseIcuData(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[64];
  size_t length = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &length) != napi_ok || length == 0) {
    return throw_type_error(env, "releaseIcuData(symbol): symbol must be a string");
  }
  double result = 0;
  void *address = dlsym(RTLD_DEFAULT, name);
  Dl_info where;
  const ElfW(Sym) *symbol = NULL;
  if (address != NULL && dladdr1(address, &where, (void **)&symbol, RTLD_DL_SYMENT) != 0 && symbol != NULL) {
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)address + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)address + symbol->st_size) & ~(page - 1);
    if (end > start) result = madvise((void *)start, end - start, MADV_DONTNEED) == 0 ? (double)(end - start) : -(double)errno;
  }
  return number(env, result);
}

NAPI_MODULE_INIT() {
  // As napi_set_named_property would make them: writable, enumerable, configurable.
  const napi_property_descriptor calls[] = {
      {"sendfile", NULL, Sendfile, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
      {"accept", NULL, Accept, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
      {"trimMemory", NULL, TrimMemory, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
      {"threadPreemptions", NULL, ThreadPreemptions, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
      {"limitMallocArenas", NULL, LimitMallocArenas, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
      {"releaseIcuData", NULL, ReleaseIcuData, NULL, NULL, NULL, napi_writable | napi_enumerable | napi_configurable, NULL},
  };
  napi_define_properties(env, exports, sizeof calls / sizeof calls[0], calls);
  transfer_register(env, exports);
  return exports;
}
