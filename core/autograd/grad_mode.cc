// Grad mode is per thread so that a data-loader or communication thread never records graphs.
#include "core/autograd/grad_mode.h"

namespace kolo {
namespace {
thread_local bool t_grad_enabled = true;
}
bool GradMode::enabled() { return t_grad_enabled; }
void GradMode::set_enabled(bool on) { t_grad_enabled = on; }
}  // namespace kolo
