// CUDA graph capture and replay (see cuda_graph.h).
#include "core/device/cuda/cuda_graph.h"

#include <string>

#include "core/device/cuda/cuda_backend.h"
#include "core/device/cuda/cuda_check.h"
#include "core/util/error.h"

namespace kolo {

CudaGraph::CudaGraph(int device) : device_(device) {
  KOLO_CHECK(device >= 0 && device < cuda_device_count(), "CudaGraph: no CUDA device ", device, " (",
             cuda_device_count(), " visible)");
}

CudaGraph::~CudaGraph() {
  if (exec_) (void)cudaGraphExecDestroy(exec_);
  if (graph_) (void)cudaGraphDestroy(graph_);
  // The pool's blocks still held by tensors go back to it when freed; its free segments become releasable.
  if (pool_open_) cuda_device_allocator(device_).release_private_pool(this);
}

void CudaGraph::capture(const std::function<void()>& fn) {
  KOLO_CHECK(!captured(), "CudaGraph: already captured on cuda:", device_, "; make a new graph to capture again");
  CudaDeviceGuard guard(device_);
  const cudaStream_t stream = current_cuda_stream_native(device_);
  CudaCachingAllocator& alloc = cuda_device_allocator(device_);
  // The warm-up steps left their blocks cached for the stream; the pool cannot use them, so give the free
  // segments back first, or the device would hold the step's memory twice.
  alloc.empty_cache();
  // Relaxed mode: the allocator may call cudaMalloc and query other streams' events while capturing.
  KOLO_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeRelaxed));
  alloc.begin_private_pool(stream, this);
  pool_open_ = true;
  std::string failure;
  try {
    fn();
  } catch (const std::exception& e) {
    failure = e.what();
  }
  alloc.end_private_pool(stream);
  cudaGraph_t graph = nullptr;
  const cudaError_t end = cudaStreamEndCapture(stream, &graph);
  if (end != cudaSuccess) (void)cudaGetLastError();
  if (failure.empty() && end != cudaSuccess)
    failure = std::string(cudaGetErrorString(end)) +
              " (a host synchronisation, or work on another stream not joined back, during capture?)";
  if (!failure.empty()) {
    if (graph) (void)cudaGraphDestroy(graph);
    KOLO_FAIL("CudaGraph: capture on cuda:", device_, " failed: ", failure);
  }
  graph_ = graph;
  KOLO_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  KOLO_CUDA_CHECK(cudaGraphUpload(exec_, stream));
}

void CudaGraph::replay() {
  KOLO_CHECK(captured(), "CudaGraph: replay() before capture() on cuda:", device_);
  CudaDeviceGuard guard(device_);
  KOLO_CUDA_CHECK(cudaGraphLaunch(exec_, current_cuda_stream_native(device_)));
}

}  // namespace kolo
