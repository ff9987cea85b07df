/* A stand-in for libedgetpu.so.1 with the TFLite external-delegate ABI.
 *
 * It claims no nodes, so the graph runs on the CPU, but the runtime's real
 * load_delegate() path is exercised. The device option decides the outcome,
 * as with a real Coral: "usb" and "usb:0" are found, anything else is not.
 * Each call appends its options to $FAKE_EDGETPU_LOG when that is set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TfLiteDelegate {
  void* data_;
  int (*Prepare)(void* context, struct TfLiteDelegate* delegate);
  int (*CopyFromBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  int (*CopyToBufferHandle)(void*, struct TfLiteDelegate*, int, void*);
  void (*FreeBufferHandle)(void*, struct TfLiteDelegate*, int*);
  int64_t flags;
  void* opaque_delegate_builder;
} TfLiteDelegate;

static int prepare(void* context, TfLiteDelegate* delegate) { return 0; }

TfLiteDelegate* tflite_plugin_create_delegate(char** keys, char** values, size_t n,
                                              void (*report_error)(const char*)) {
  const char* device = "";
  const char* log_path = getenv("FAKE_EDGETPU_LOG");
  FILE* log = log_path ? fopen(log_path, "a") : NULL;
  for (size_t i = 0; i < n; i++) {
    if (log) fprintf(log, "%s=%s\n", keys[i], values[i]);
    if (strcmp(keys[i], "device") == 0) device = values[i];
  }
  if (log) { fprintf(log, "create\n"); fclose(log); }
  if (device[0] && strcmp(device, "usb") != 0 && strcmp(device, "usb:0") != 0) {
    if (report_error) report_error("no Edge TPU matches the device option");
    return NULL;
  }
  TfLiteDelegate* delegate = calloc(1, sizeof(TfLiteDelegate));
  delegate->Prepare = prepare;
  return delegate;
}

void tflite_plugin_destroy_delegate(TfLiteDelegate* delegate) { free(delegate); }
