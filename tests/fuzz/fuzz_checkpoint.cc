// Fuzz target: resuming from an arbitrary checkpoint file. The bytes become the newest file of a
// CheckpointManager directory; whatever load_latest() accepts is then loaded into a small Adam optimizer's
// state. Every outcome must be a loaded state, "no usable checkpoint", or a kolo::Error — never a crash.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/io/checkpoint.h"
#include "core/util/error.h"
#include "optim/adam.h"

namespace {

const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string d = "/tmp/kolo_fuzz_ckpt_" + std::to_string(::getpid());
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = scratch_dir() + "/ckpt-000000000001.safetensors";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  try {
    kolo::CheckpointManager mgr(scratch_dir(), 2);
    auto latest = mgr.load_latest();
    if (!latest) return 0;
    kolo::Generator gen(1);
    std::vector<kolo::NamedParameter> params{{"w", kolo::Tensor::randn({2, 3}, gen)}, {"b", kolo::Tensor::zeros({3})}};
    kolo::Adam opt(params, kolo::AdamOptions{});
    kolo::OptimizerState st;
    for (const auto& [name, t] : latest->second.tensors) {
      // Scalars travel as one-element tensors; everything else is a state tensor.
      if (t.numel() == 1 && name.find('/') == std::string::npos)
        st.scalars[name] = t.to(kolo::DType::F64).to_vector<double>()[0];
      else if (t.numel() == 1 && name.size() > 5 && name.compare(name.size() - 5, 5, "/step") == 0)
        st.scalars[name] = t.to(kolo::DType::F64).to_vector<double>()[0];
      else
        st.tensors[name] = t;
    }
    opt.load_state_dict(st);
  } catch (const kolo::Error&) {
  }
  return 0;
}
