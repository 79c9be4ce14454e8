/*
 * sunrise_rt — the emulated Sunrise GPGPU runtime.
 *
 * A C API shaped like the CUDA runtime so that code written against one reads
 * naturally against the other. Every function returns an srError_t; nothing
 * aborts the process. The runtime knows nothing about PyTorch.
 *
 * Semantics that callers rely on:
 *  - Device memory is its own space as far as the API is concerned: copies go
 *    through srMemcpy* with an explicit kind that must match the pointers.
 *  - Streams are in-order asynchronous queues, each drained by its own device
 *    thread; different streams run concurrently. There is no implicit "null
 *    stream": callers name a stream (srDeviceGetDefaultStream gives the device's
 *    default one), and a NULL handle is srErrorInvalidResourceHandle.
 *  - A kernel launch spreads its grid of blocks over the device's compute units
 *    and completes, in stream order, when every block has run.
 *  - Failures inside asynchronous work (a kernel reporting an error, an invalid
 *    copy discovered late) are sticky per device: every later synchronizing call
 *    on that device returns the error until srGetLastError() reads and clears it.
 *
 * Environment:
 *  SUNRISE_DEVICE_COUNT     number of devices (default 2)
 *  SUNRISE_DEVICE_MEMORY    capacity per device, e.g. "16GiB", "512MiB" (default:
 *                           16 GiB or half the host RAM, whichever is smaller)
 *  SUNRISE_COMPUTE_UNITS    compute-unit threads per device (default: host cores)
 *  SUNRISE_LAUNCH_BLOCKING  "1": every submission returns only once it has run
 *  SUNRISE_SPIN_US          how long idle device threads and waiting hosts spin
 *                           before sleeping, in microseconds (default 50)
 *  SUNRISE_SERIAL_US        work estimated to take less than this many
 *                           microseconds on one compute unit is best left to
 *                           one: srDeviceProp::serialWorkUs (default 100)
 *  SUNRISE_MAX_QUEUED       launches a stream queues before the host waits
 *                           (default 256)
 *  - Stream capture (srStreamBeginCapture) records work instead of running it;
 *    the resulting graph is launched on a stream as one submission (see the
 *    graph section below).
 *
 *  SUNRISE_MEMCHECK         "1": device pointers fault when host code
 *                           dereferences them, device work faults past the end
 *                           of an allocation or on freed memory, and each such
 *                           fault prints a report naming the allocation and
 *                           aborts (see srKernelAddress)
 */
#ifndef SUNRISE_RT_H_
#define SUNRISE_RT_H_

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define SR_API __declspec(dllexport)
#else
#define SR_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- errors */

typedef enum srError {
  srSuccess = 0,
  srErrorInvalidValue = 1,          /* an argument is out of range or inconsistent */
  srErrorMemoryAllocation = 2,      /* the device is out of memory */
  srErrorInitializationError = 3,   /* the runtime could not start (bad environment) */
  srErrorInvalidDevice = 4,         /* device ordinal out of range */
  srErrorInvalidResourceHandle = 5, /* NULL or destroyed stream / event */
  srErrorInvalidDevicePointer = 6,  /* not a live allocation of this runtime */
  srErrorInvalidMemcpyDirection = 7,/* copy kind does not match the pointers */
  srErrorNotReady = 8,              /* query: the work has not finished yet */
  srErrorLaunchFailure = 9,         /* a kernel or host function failed (sticky) */
  srErrorHostMemoryAllocation = 10, /* pinned host memory could not be allocated */
  srErrorNotSupported = 11,         /* valid request the emulator cannot serve */
  srErrorInvalidConfiguration = 12, /* launch grid / block / arguments invalid */
  srErrorStreamCaptureUnsupported = 13, /* not permitted while a stream captures (invalidates the capture) */
  srErrorStreamCaptureInvalidated = 14, /* the capture was invalidated by an earlier error */
  srErrorStreamCaptureUnjoined = 15,    /* a stream forked from the capture was not joined back */
  srErrorStreamCaptureIsolation = 16,   /* captured work depends on work outside the capture */
  srErrorStreamCaptureUnmatched = 17,   /* capture ended on a stream that did not begin it */
  srErrorStreamCaptureWrongThread = 18, /* capture ended by another thread than the one that began it */
  srErrorCapturedEvent = 19,            /* event recorded in a capture queried or waited on by the host */
  srErrorIllegalState = 20              /* e.g. beginning a capture on a stream that captures */
} srError_t;

SR_API const char* srGetErrorName(srError_t error);
SR_API const char* srGetErrorString(srError_t error);
/* Detail about the most recent error returned to the calling thread (which
 * pointer, which size, what the kernel reported). Never NULL. */
SR_API const char* srGetLastErrorDetail(void);
/* Returns and clears the sticky error of the current device. */
SR_API srError_t srGetLastError(void);
/* Returns the sticky error of the current device without clearing it. */
SR_API srError_t srPeekAtLastError(void);

/* --------------------------------------------------------------- devices */

typedef struct srDeviceProp {
  char name[256];
  size_t totalGlobalMem;      /* bytes */
  int multiProcessorCount;    /* compute units (threads executing blocks) */
  int major;                  /* compute capability */
  int minor;
  int maxThreadsPerBlock;
  int warpSize;
  int maxGridSize[3];
  size_t sharedMemPerBlock;   /* bytes of per-block scratch a kernel may assume */
  int memcheck;               /* 1 under SUNRISE_MEMCHECK=1 */
  int serialWorkUs;           /* work estimated to take less than this on one
                                 compute unit is best run on one
                                 (SUNRISE_SERIAL_US) */
} srDeviceProp;

SR_API srError_t srGetDeviceCount(int* count);
SR_API srError_t srGetDevice(int* device); /* per host thread; default 0 */
SR_API srError_t srSetDevice(int device);
SR_API srError_t srGetDeviceProperties(srDeviceProp* prop, int device);
/* Waits for every stream of the current device; returns its sticky error. */
SR_API srError_t srDeviceSynchronize(void);
/* Nanoseconds the device's stream threads have spent running work since the
 * runtime started, summed over its streams (so up to streams x wall time):
 * from the moment a stream's queue has work until it runs dry, including a
 * stream's waits for another stream's events. */
SR_API srError_t srDeviceGetBusyTime(int device, long long* ns);
/* free = capacity - bytes held by srMalloc on the current device. */
SR_API srError_t srMemGetInfo(size_t* free_bytes, size_t* total_bytes);

/* ---------------------------------------------------------------- memory */

typedef enum srMemoryType {
  srMemoryTypeUnregistered = 0, /* ordinary (pageable) host memory */
  srMemoryTypeHost = 1,         /* pinned host memory from srMallocHost */
  srMemoryTypeDevice = 2
} srMemoryType;

typedef struct srPointerAttributes {
  srMemoryType type;
  int device;        /* owning device for device memory, -1 otherwise */
  void* base;        /* start of the allocation containing the pointer */
  size_t size;       /* size of that allocation in bytes */
} srPointerAttributes;

/* Allocates on the current device. Memory is reserved lazily: nothing is
 * touched until written. Fails with srErrorMemoryAllocation past capacity. */
SR_API srError_t srMalloc(void** ptr, size_t size);
/* The address at which device work (a kernel, a host function standing in
 * for one) reads and writes the bytes of device pointer `ptr`. Device
 * pointers are not host addresses, as on a GPU: under SUNRISE_MEMCHECK=1 they
 * point at memory without access. Without it, and for any other pointer,
 * this returns `ptr`. */
SR_API void* srKernelAddress(const void* ptr);
/* Waits for the device to be idle (as cudaFree does), then releases. */
SR_API srError_t srFree(void* ptr);
SR_API srError_t srMallocHost(void** ptr, size_t size);
SR_API srError_t srFreeHost(void* ptr);
SR_API srError_t srPointerGetAttributes(srPointerAttributes* attributes, const void* ptr);

typedef enum srMemcpyKind {
  srMemcpyHostToHost = 0,
  srMemcpyHostToDevice = 1,
  srMemcpyDeviceToHost = 2,
  srMemcpyDeviceToDevice = 3, /* also across devices */
  srMemcpyDefault = 4         /* inferred from the pointers */
} srMemcpyKind;

/* ----------------------------------------------------- streams and events */

typedef struct srStream* srStream_t;
typedef struct srEvent* srEvent_t;

enum { srStreamDefault = 0, srStreamNonBlocking = 1 };
enum { srEventDefault = 0, srEventBlockingSync = 1, srEventDisableTiming = 2 };

SR_API srError_t srDeviceGetDefaultStream(int device, srStream_t* stream);
/* Lower numbers are higher priority, as in CUDA: [greatest, least] = [-1, 0]. */
SR_API srError_t srDeviceGetStreamPriorityRange(int* least, int* greatest);
/* Creates a stream on the current device. */
SR_API srError_t srStreamCreate(srStream_t* stream);
SR_API srError_t srStreamCreateWithPriority(srStream_t* stream, unsigned flags, int priority);
/* Pending work still runs to completion; the handle is invalid afterwards. */
SR_API srError_t srStreamDestroy(srStream_t stream);
SR_API srError_t srStreamSynchronize(srStream_t stream);
/* srSuccess when everything submitted has finished, srErrorNotReady while
 * anything (including a task already being executed) is outstanding. */
SR_API srError_t srStreamQuery(srStream_t stream);
SR_API srError_t srStreamWaitEvent(srStream_t stream, srEvent_t event, unsigned flags);
SR_API srError_t srStreamGetDevice(srStream_t stream, int* device);
SR_API srError_t srStreamGetPriority(srStream_t stream, int* priority);

SR_API srError_t srEventCreate(srEvent_t* event);
SR_API srError_t srEventCreateWithFlags(srEvent_t* event, unsigned flags);
SR_API srError_t srEventDestroy(srEvent_t event);
SR_API srError_t srEventRecord(srEvent_t event, srStream_t stream);
/* srSuccess when the recorded work has finished (or nothing was recorded). */
SR_API srError_t srEventQuery(srEvent_t event);
SR_API srError_t srEventSynchronize(srEvent_t event);
/* Milliseconds between two completed, timing-enabled events (device clock). */
SR_API srError_t srEventElapsedTime(float* ms, srEvent_t start, srEvent_t end);

/* ------------------------------------------------------- copies and sets */

/* Synchronous: returns once the copy is done (waits for the device's streams
 * first, as cudaMemcpy on the legacy stream does). */
SR_API srError_t srMemcpy(void* dst, const void* src, size_t count, srMemcpyKind kind);
/* Asynchronous when the host side is pinned (or for device-to-device);
 * returns once the copy has run when the host side is pageable memory. */
SR_API srError_t srMemcpyAsync(void* dst, const void* src, size_t count, srMemcpyKind kind,
                               srStream_t stream);
SR_API srError_t srMemset(void* dst, int value, size_t count);
SR_API srError_t srMemsetAsync(void* dst, int value, size_t count, srStream_t stream);

/* ----------------------------------------------------------------- launch */

typedef struct srDim3 {
  unsigned x, y, z;
} srDim3;

typedef struct srKernelContext {
  srDim3 gridDim;
  srDim3 blockDim;
  srDim3 blockIdx;
  int computeUnit; /* which compute unit runs this block: [0, multiProcessorCount) */
  int device;
} srKernelContext;

/* A kernel runs once per block. `args` points at the runtime's copy of the
 * argument bytes given to srLaunchKernel, shared by all blocks. */
typedef void (*srKernel_t)(const srKernelContext* ctx, void* args);
/* A host function runs once, on the stream's device thread, in stream order. */
typedef void (*srHostFn_t)(void* user_data);

/* Copies argsSize bytes of arguments (at most SR_MAX_KERNEL_ARGS_BYTES), then
 * enqueues. Returns at once unless SUNRISE_LAUNCH_BLOCKING=1. */
#define SR_MAX_KERNEL_ARGS_BYTES 4096
SR_API srError_t srLaunchKernel(srKernel_t kernel, srDim3 grid, srDim3 block, const void* args,
                                size_t argsSize, srStream_t stream);
SR_API srError_t srLaunchHostFunc(srStream_t stream, srHostFn_t fn, void* user_data);

/* ---------------------------------------------------------- graph capture
 *
 * While a stream captures, what is submitted to it (kernels, host functions,
 * copies, memsets) is recorded as nodes of a graph instead of running. An
 * event recorded on a capturing stream and waited on by another stream forks
 * the capture onto that stream; every forked stream must be joined back (its
 * last work waited on by the origin stream) before the capture ends.
 * srGraphInstantiate turns the graph into an executable one, which
 * srGraphLaunch runs on a stream as a single submission, in stream order,
 * as often as wanted. Nodes run in capture order on the launch stream's
 * device (a kernel node still spreads its blocks over the compute units).
 *
 * A captured host function keeps its user_data pointer: the caller keeps
 * what it points at alive for as long as the graph and its executable ones.
 * Kernel arguments are copied at capture.
 *
 * Calls that wait for the device cannot be captured. On a capturing stream,
 * srStreamSynchronize and srStreamQuery fail with
 * srErrorStreamCaptureUnsupported; srEventQuery and srEventSynchronize on an
 * event recorded in an active capture fail with srErrorCapturedEvent. Calls
 * that are merely unsafe during capture (srDeviceSynchronize, srMemcpy,
 * srMemset, srFree, srMallocHost, srFreeHost, srMemcpyAsync from pageable
 * memory) fail with srErrorStreamCaptureUnsupported when the calling thread is
 * prohibited from making them, which depends on the capture modes as in CUDA:
 *   Global       the thread is prohibited while it has a capture of its own
 *                that is not relaxed, or while any other thread has a
 *                global-mode capture;
 *   ThreadLocal  only its own non-relaxed captures prohibit it;
 *   Relaxed      never prohibited.
 * The thread's mode (srThreadExchangeStreamCaptureMode; default Global) is
 * what these rules read; a capture's own mode decides whether it counts as a
 * global capture for other threads and whether it must end on its thread.
 * A failed call invalidates the captures concerned: work submitted to them
 * afterwards fails with srErrorStreamCaptureInvalidated and so does
 * srStreamEndCapture, which returns no graph but ends the capture. */

typedef struct srGraph* srGraph_t;
typedef struct srGraphExec* srGraphExec_t;

typedef enum srStreamCaptureMode {
  srStreamCaptureModeGlobal = 0,
  srStreamCaptureModeThreadLocal = 1,
  srStreamCaptureModeRelaxed = 2
} srStreamCaptureMode;

typedef enum srStreamCaptureStatus {
  srStreamCaptureStatusNone = 0,
  srStreamCaptureStatusActive = 1,
  srStreamCaptureStatusInvalidated = 2
} srStreamCaptureStatus;

SR_API srError_t srStreamBeginCapture(srStream_t stream, srStreamCaptureMode mode);
/* Ends the capture begun on `stream` and returns its graph. */
SR_API srError_t srStreamEndCapture(srStream_t stream, srGraph_t* graph);
/* Ends the capture begun on `stream` from any thread, discarding what was
 * recorded: for an owner that goes away in the middle of a capture. */
SR_API srError_t srStreamAbortCapture(srStream_t stream);
SR_API srError_t srStreamIsCapturing(srStream_t stream, srStreamCaptureStatus* status);
/* `id` (may be NULL) identifies the capture sequence, unique in the process. */
SR_API srError_t srStreamGetCaptureInfo(srStream_t stream, srStreamCaptureStatus* status, unsigned long long* id);
/* Sets the calling thread's capture interaction mode, returning the old one in *mode. */
SR_API srError_t srThreadExchangeStreamCaptureMode(srStreamCaptureMode* mode);
SR_API srError_t srGraphGetNodeCount(srGraph_t graph, size_t* count);
/* Writes the graph's nodes and dependencies as a Graphviz file. */
SR_API srError_t srGraphDebugDotPrint(srGraph_t graph, const char* path);
SR_API srError_t srGraphDestroy(srGraph_t graph);
SR_API srError_t srGraphInstantiate(srGraphExec_t* exec, srGraph_t graph);
/* Queues one run of the whole graph on `stream`, after the stream's earlier
 * work and after the executable graph's earlier launches. */
SR_API srError_t srGraphLaunch(srGraphExec_t exec, srStream_t stream);
/* Waits for the graph's launches that have not run yet, then releases it. */
SR_API srError_t srGraphExecDestroy(srGraphExec_t exec);

/* ------------------------------------------------------ activity tracing
 *
 * What a profiler reads of the device's timeline (CUPTI's activity API,
 * reduced). While enabled, each kernel, host function, copy and set that a
 * stream runs, also as a node of a replayed graph, is recorded with its device
 * timestamps and with the host side of its launch. Timestamps are nanoseconds
 * of the system clock since the Unix epoch. Tracing costs the launch path
 * nothing measurable while disabled. */
typedef enum srActivityKind {
  srActivityKindKernel = 0,
  srActivityKindHostFunc = 1,
  srActivityKindMemcpy = 2,
  srActivityKindMemset = 3
} srActivityKind;

typedef struct srActivityRecord {
  srActivityKind kind;
  int device;
  srStream_t stream;
  /* The external id the launching thread had pushed (0: none); a graph's
   * nodes carry the id of the srGraphLaunch that ran them. */
  unsigned long long correlationId;
  long long startNs, endNs;             /* on the device */
  long long launchStartNs, launchEndNs; /* the launching call, on the host */
  unsigned long long launchThread;      /* the launching thread's kernel id */
  int inGraph;                          /* 1: ran as a node of a replayed graph */
  srDim3 grid;                          /* kernels */
  size_t bytes;                         /* copies and sets */
  srMemcpyKind copyKind;                /* copies: resolved, never srMemcpyDefault */
} srActivityRecord;

/* Starts (1) or stops (0) recording. Work launched while recording is
 * recorded when it runs, even after recording stopped. */
SR_API srError_t srActivityEnable(int enable);
/* A per-thread stack of ids that launches made by this thread carry (the
 * innermost id pushed since recording last started). */
SR_API srError_t srActivityPushExternalCorrelationId(unsigned long long id);
SR_API srError_t srActivityPopExternalCorrelationId(unsigned long long* id);
/* Hands every record taken so far to `callback` (in one or more batches, each
 * in the order the work ran on its stream) and forgets them. */
typedef void (*srActivityCallback_t)(const srActivityRecord* records, size_t count, void* user_data);
SR_API srError_t srActivityFlush(srActivityCallback_t callback, void* user_data);

/* Called from inside a kernel or host function: marks the launch failed. The
 * error becomes the device's sticky error with `message` as its detail. */
SR_API void srReportAsyncError(srError_t error, const char* message);

/* Called by a thread of the runtime's that stops computing for a while: a
 * host thread about to block waiting for a stream (after spinning), a device
 * thread whose queue has been empty for 100 ms. Lets the embedding release
 * per-thread resources that would otherwise compete with the threads still
 * running (e.g. an OpenMP team, which costs the next parallel region its
 * re-creation). NULL removes it. */
typedef void (*srSleepHook_t)(void);
SR_API void srSetSleepHook(srSleepHook_t hook);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SUNRISE_RT_H_ */
