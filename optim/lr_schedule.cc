// The schedule formulas (see lr_schedule.h).
#include "optim/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <sstream>

#include "core/util/error.h"

namespace kolo {

namespace {

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void check_step(int64_t step, const char* what) {
  KOLO_CHECK(step >= 0, "lr schedule ", what, ": step must be >= 0, got ", step);
}

class Constant final : public LrSchedule {
 public:
  explicit Constant(double v) : v_(v) {}
  double operator()(int64_t step) const override {
    check_step(step, "constant");
    return v_;
  }
  std::string describe() const override { return "constant " + fmt(v_); }

 private:
  double v_;
};

class LinearWarmup final : public LrSchedule {
 public:
  LinearWarmup(int64_t warmup, LrSchedulePtr after, double start) : warmup_(warmup), after_(std::move(after)), start_(start) {}
  double operator()(int64_t step) const override {
    check_step(step, "linear_warmup");
    if (step >= warmup_) return (*after_)(step);
    const double target = (*after_)(warmup_);
    return start_ + (target - start_) * static_cast<double>(step) / static_cast<double>(warmup_);
  }
  std::string describe() const override {
    return "linear warmup " + fmt(start_) + " -> over " + std::to_string(warmup_) + " steps, then " + after_->describe();
  }

 private:
  int64_t warmup_;
  LrSchedulePtr after_;
  double start_;
};

class InverseSqrt final : public LrSchedule {
 public:
  InverseSqrt(double peak, int64_t warmup) : peak_(peak), warmup_(warmup) {}
  double operator()(int64_t step) const override {
    check_step(step, "inverse_sqrt_decay");
    if (step == 0) return peak_;
    return peak_ * std::sqrt(static_cast<double>(warmup_) / static_cast<double>(step));
  }
  std::string describe() const override {
    return fmt(peak_) + " * sqrt(" + std::to_string(warmup_) + " / step)";
  }

 private:
  double peak_;
  int64_t warmup_;
};

class WarmupInverseSqrt final : public LrSchedule {
 public:
  WarmupInverseSqrt(double peak, int64_t warmup) : peak_(peak), warmup_(warmup) {}
  double operator()(int64_t step) const override {
    check_step(step, "warmup_inverse_sqrt");
    if (step == 0) return 0.0;
    const double s = static_cast<double>(step), w = static_cast<double>(warmup_);
    return peak_ * std::min(s / w, std::sqrt(w / s));
  }
  std::string describe() const override {
    return fmt(peak_) + " * min(step / " + std::to_string(warmup_) + ", sqrt(" + std::to_string(warmup_) + " / step))";
  }

 private:
  double peak_;
  int64_t warmup_;
};

class Noam final : public LrSchedule {
 public:
  Noam(int64_t d_model, int64_t warmup, double factor) : d_(d_model), warmup_(warmup), factor_(factor) {}
  double operator()(int64_t step) const override {
    check_step(step, "noam");
    if (step == 0) return 0.0;
    const double s = static_cast<double>(step);
    return factor_ * std::pow(static_cast<double>(d_), -0.5) *
           std::min(std::pow(s, -0.5), s * std::pow(static_cast<double>(warmup_), -1.5));
  }
  std::string describe() const override {
    return fmt(factor_) + " * " + std::to_string(d_) + "^-0.5 * min(step^-0.5, step * " + std::to_string(warmup_) +
           "^-1.5)";
  }

 private:
  int64_t d_, warmup_;
  double factor_;
};

class StepDecay final : public LrSchedule {
 public:
  StepDecay(double base, std::vector<int64_t> boundaries, double factor)
      : base_(base), boundaries_(std::move(boundaries)), factor_(factor) {}
  double operator()(int64_t step) const override {
    check_step(step, "step_decay");
    const auto passed = std::upper_bound(boundaries_.begin(), boundaries_.end(), step) - boundaries_.begin();
    return base_ * std::pow(factor_, static_cast<double>(passed));
  }
  std::string describe() const override {
    std::string b;
    for (int64_t x : boundaries_) {
      if (!b.empty()) b += ',';
      b += std::to_string(x);
    }
    return fmt(base_) + " * " + fmt(factor_) + "^(#boundaries <= step), boundaries {" + b + "}";
  }

 private:
  double base_;
  std::vector<int64_t> boundaries_;
  double factor_;
};

class Polynomial final : public LrSchedule {
 public:
  Polynomial(double base, double end, int64_t total, double power) : base_(base), end_(end), total_(total), power_(power) {}
  double operator()(int64_t step) const override {
    check_step(step, "polynomial_decay");
    const double frac = static_cast<double>(std::min(step, total_)) / static_cast<double>(total_);
    return end_ + (base_ - end_) * std::pow(1.0 - frac, power_);
  }
  std::string describe() const override {
    return fmt(end_) + " + (" + fmt(base_) + " - " + fmt(end_) + ") * (1 - min(step, " + std::to_string(total_) +
           ") / " + std::to_string(total_) + ")^" + fmt(power_);
  }

 private:
  double base_, end_;
  int64_t total_;
  double power_;
};

class Cosine final : public LrSchedule {
 public:
  Cosine(double base, int64_t total, double min_lr) : base_(base), total_(total), min_(min_lr) {}
  double operator()(int64_t step) const override {
    check_step(step, "cosine_decay");
    const double frac = static_cast<double>(std::min(step, total_)) / static_cast<double>(total_);
    return min_ + (base_ - min_) * 0.5 * (1.0 + std::cos(std::numbers::pi * frac));
  }
  std::string describe() const override {
    return fmt(min_) + " + (" + fmt(base_) + " - " + fmt(min_) + ") * (1 + cos(pi * min(step, " +
           std::to_string(total_) + ") / " + std::to_string(total_) + ")) / 2";
  }

 private:
  double base_;
  int64_t total_;
  double min_;
};

class Scaled final : public LrSchedule {
 public:
  Scaled(LrSchedulePtr inner, double s) : inner_(std::move(inner)), s_(s) {}
  double operator()(int64_t step) const override { return s_ * (*inner_)(step); }
  std::string describe() const override { return fmt(s_) + " * [" + inner_->describe() + "]"; }

 private:
  LrSchedulePtr inner_;
  double s_;
};

}  // namespace

LrSchedulePtr constant_lr(double value) {
  KOLO_CHECK(value >= 0, "constant_lr: negative learning rate ", value);
  return std::make_shared<Constant>(value);
}

LrSchedulePtr linear_warmup(int64_t warmup_steps, LrSchedulePtr after, double start_lr) {
  KOLO_CHECK(warmup_steps > 0, "linear_warmup: warmup_steps must be > 0, got ", warmup_steps);
  KOLO_CHECK(after != nullptr, "linear_warmup: no schedule to warm up into");
  return std::make_shared<LinearWarmup>(warmup_steps, std::move(after), start_lr);
}

LrSchedulePtr inverse_sqrt_decay(double peak, int64_t warmup_steps) {
  KOLO_CHECK(warmup_steps > 0, "inverse_sqrt_decay: warmup_steps must be > 0, got ", warmup_steps);
  return std::make_shared<InverseSqrt>(peak, warmup_steps);
}

LrSchedulePtr warmup_inverse_sqrt(double peak, int64_t warmup_steps) {
  KOLO_CHECK(warmup_steps > 0, "warmup_inverse_sqrt: warmup_steps must be > 0, got ", warmup_steps);
  return std::make_shared<WarmupInverseSqrt>(peak, warmup_steps);
}

LrSchedulePtr noam(int64_t d_model, int64_t warmup_steps, double factor) {
  KOLO_CHECK(d_model > 0 && warmup_steps > 0, "noam: d_model and warmup_steps must be > 0, got ", d_model, ", ",
             warmup_steps);
  return std::make_shared<Noam>(d_model, warmup_steps, factor);
}

LrSchedulePtr step_decay(double base, std::vector<int64_t> boundaries, double factor) {
  KOLO_CHECK(std::is_sorted(boundaries.begin(), boundaries.end()), "step_decay: boundaries must be ascending");
  return std::make_shared<StepDecay>(base, std::move(boundaries), factor);
}

LrSchedulePtr goyal_step_decay(double base, double start_lr, int64_t steps_per_epoch, int64_t warmup_epochs,
                               std::vector<int64_t> decay_epochs, double factor) {
  KOLO_CHECK(steps_per_epoch > 0, "goyal_step_decay: steps_per_epoch must be > 0, got ", steps_per_epoch);
  for (int64_t& e : decay_epochs) e *= steps_per_epoch;
  LrSchedulePtr decay = step_decay(base, std::move(decay_epochs), factor);
  if (warmup_epochs <= 0) return decay;
  return linear_warmup(warmup_epochs * steps_per_epoch, std::move(decay), start_lr);
}

LrSchedulePtr polynomial_decay(double base, double end, int64_t total_steps, double power) {
  KOLO_CHECK(total_steps > 0 && power > 0, "polynomial_decay: total_steps and power must be > 0, got ", total_steps,
             ", ", power);
  return std::make_shared<Polynomial>(base, end, total_steps, power);
}

LrSchedulePtr cosine_decay(double base, int64_t total_steps, double min_lr) {
  KOLO_CHECK(total_steps > 0, "cosine_decay: total_steps must be > 0, got ", total_steps);
  return std::make_shared<Cosine>(base, total_steps, min_lr);
}

LrSchedulePtr scaled(LrSchedulePtr inner, double s) {
  KOLO_CHECK(inner != nullptr, "scaled: no schedule");
  return std::make_shared<Scaled>(std::move(inner), s);
}

double linear_scaling_rule(double base_lr, int64_t global_batch, int64_t base_batch) {
  KOLO_CHECK(global_batch > 0 && base_batch > 0, "linear_scaling_rule: batches must be > 0, got ", global_batch, ", ",
             base_batch);
  return base_lr * static_cast<double>(global_batch) / static_cast<double>(base_batch);
}

}  // namespace kolo
