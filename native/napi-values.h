/* The two Node-API helpers edge-net.c and transfer.c both use: one definition for both. */
#ifndef EDGE_NET_NAPI_VALUES_H
#define EDGE_NET_NAPI_VALUES_H
#include <node_api.h>

/* Throws a TypeError with `message`; returns NULL for the caller to return. */
static inline napi_value throw_type_error(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/* A JavaScript number (doubles hold every byte count and errno the addon returns). */
static inline napi_value number(napi_env env, double value) {
  napi_value result;
  napi_create_double(env, value, &result);
  return result;
}

#endif
