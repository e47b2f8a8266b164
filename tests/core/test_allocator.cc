// CPU pool allocator: reuse, accounting; a training-like loop does not grow memory.
#include <gtest/gtest.h>

#include "core/device/allocator.h"
#include "core/device/device_backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/autograd/grad_mode.h"
#include "core/ops/reduce.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

using namespace kolo;

TEST(Allocator, ReusesBlocksAndAccounts) {
  CpuPoolAllocator pool;
  void* a = pool.allocate(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % CpuPoolAllocator::kAlignment, 0u);
  EXPECT_EQ(pool.stats().current, 1024u);  // 512-byte granules
  pool.deallocate(a, 1000);
  EXPECT_EQ(pool.stats().current, 0u);
  void* b = pool.allocate(1000);
  EXPECT_EQ(a, b);
  EXPECT_EQ(pool.stats().cache_hits, 1u);
  pool.deallocate(b, 1000);
  pool.empty_cache();
  EXPECT_EQ(pool.stats().reserved, 0u);
}

#if defined(__SANITIZE_ADDRESS__)
TEST(Allocator, FreeBlocksArePoisonedUnderAsan) {
  // The pool keeps freed blocks mapped; poisoning them lets ASan report a tensor used after its storage died.
  CpuPoolAllocator pool;
  auto* a = static_cast<char*>(pool.allocate(4096));
  EXPECT_FALSE(__asan_region_is_poisoned(a, 4096));
  pool.deallocate(a, 4096);
  EXPECT_TRUE(__asan_address_is_poisoned(a));
  EXPECT_TRUE(__asan_address_is_poisoned(a + 4095));
  auto* b = static_cast<char*>(pool.allocate(100));
  EXPECT_EQ(a, b);
  EXPECT_FALSE(__asan_region_is_poisoned(b, 100));
  pool.deallocate(b, 100);
}
#endif

TEST(Allocator, TrainingStepsDoNotGrowMemory) {
  Generator g(3);
  Tensor w = Tensor::randn({64, 32}, g).set_requires_grad(true);
  Tensor x = Tensor::randn({16, 32}, g);
  Allocator& alloc = allocator_for(Device::cpu());
  size_t reserved_after_warmup = 0, current_after_warmup = 0;
  for (int step = 0; step < 100; ++step) {
    Tensor loss = mean(square(relu(linear(x, w))));
    loss.backward();
    {
      NoGradGuard ng;
      add_(w, w.grad(), -0.01);  // plain SGD update
    }
    w.zero_grad();
    if (step == 2) {
      reserved_after_warmup = alloc.stats().reserved;
      current_after_warmup = alloc.stats().current;
    } else if (step > 2) {
      ASSERT_EQ(alloc.stats().reserved, reserved_after_warmup) << "step " << step;
      ASSERT_EQ(alloc.stats().current, current_after_warmup) << "step " << step;
    }
  }
}

// Device graphs are a CUDA feature: the CPU backend refuses to make one, with a message.
TEST(Allocator, CpuBackendHasNoGraphs) {
  try {
    device_backend(DeviceType::CPU).create_graph(0);
    FAIL() << "the CPU backend made a graph";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA feature"), std::string::npos) << e.what();
  }
}
