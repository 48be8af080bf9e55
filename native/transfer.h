/* Response bodies sent by the event loop (transfer.c): adds startTransfer, transferProgress and abortTransfer to the addon's exports. */
#ifndef EDGE_NET_TRANSFER_H
#define EDGE_NET_TRANSFER_H
#include <node_api.h>

void transfer_register(napi_env env, napi_value exports);

#endif
