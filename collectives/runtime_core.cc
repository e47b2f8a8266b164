// RuntimeCore: the state shared by a Runtime and its background thread, and the thread's loop.
#include "collectives/runtime_core.h"

#include <algorithm>
#include <thread>

#include "collectives/backend_factory.h"
#include "collectives/controller.h"
#include "collectives/executor.h"
#include "collectives/mpi/poll_backoff.h"
#include "collectives/response_cache.h"
#include "collectives/timeline.h"
#include "core/util/logging.h"

namespace kolo {
namespace {

using Clock = std::chrono::steady_clock;
// How long after the last executed collective the loop keeps cycling without pause while requests wait.
constexpr auto kEagerWindow = std::chrono::milliseconds(20);
// Launched device groups are polled every kPollSlice while this thread waits for the next cycle, not in a
// spin: each poll is a driver call that competes with the training thread's kernel launches. While a thread
// blocks in Handle::wait() (the DistributedOptimizer's default host wait among them), they are polled in a
// spin (yield) instead, so the waiter sees its group complete at once.
constexpr auto kPollSlice = std::chrono::microseconds(50);

}  // namespace

RuntimeCore::RuntimeCore(Config c)
    : config(std::move(c)), health(std::make_shared<RuntimeHealth>()), timeline(std::make_unique<Timeline>()) {
  health->timeout_s = config.heartbeat_timeout_s;
  process_sets[0] = {};
}

RuntimeCore::~RuntimeCore() = default;

void RuntimeCore::fail_all(const std::string& msg) {
  std::vector<std::shared_ptr<TensorEntry>> victims;
  {
    std::lock_guard<std::mutex> lock(mu);
    {
      std::lock_guard<std::mutex> hl(health->mu);
      if (health->failure.empty()) health->failure = msg;
    }
    for (auto& [name, e] : in_flight) victims.push_back(e);
    in_flight.clear();
    for (const Launched& g : launched)
      for (const auto& e : g.entries)
        if (e) victims.push_back(e);
    queue.clear();
    if (join_entry) victims.push_back(join_entry);
    join_entry.reset();
  }
  for (auto& e : victims) e->state->finish(msg);
}

void RuntimeCore::finish_group(const std::vector<std::shared_ptr<TensorEntry>>& entries, const std::string& error,
                               bool in_table) {
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& e : entries)
      if (e) {
        if (in_table) in_flight.erase(e->req.name);
        ++stats.tensors;
      }
  }
  for (const auto& e : entries)
    if (e) {
      // A launched group's output was published under the state's lock (launch()), where wait_device() may
      // be reading it now; `launched` is written only by this thread.
      if (!e->state->launched) e->state->output = e->output;
      if (!e->state->finish_quietly(error)) e->state->finish(error);
    }
  for (const auto& e : entries)
    if (e) e->state->cv.notify_all();
}

void RuntimeCore::complete_launched(bool block) {
  const auto started = Clock::now();
  while (!launched.empty()) {
    Launched& g = launched.front();
    std::string error;
    try {
      if (!executor->finished(*g.work)) {
        if (!block) break;
        poll_pause(started);
        continue;
      }
    } catch (const std::exception& e) {
      error = detail::concat(e.what(), " (rank ", rank, ")");
      KOLO_LOG(Error, error);
    }
    finish_group(g.entries, error, false);
    launched.pop_front();
  }
}

void RuntimeCore::loop(std::promise<void>* started) {
  health->loop_thread = std::this_thread::get_id();
  try {
    Backends b = make_backends(config);
    rank = b.world->rank();
    size = b.world->size();
    local_rank = b.local_rank;
    local_size = b.local_size;
    health->local_size = local_size;
    cross_rank = b.cross_rank;
    cross_size = b.cross_size;
    backend_name = b.name;
    control = std::move(b.control);
    cache = std::make_unique<ResponseCache>(config.cache_capacity);
    controller = std::make_unique<Controller>(*control, config, *cache);
    if (!config.timeline.empty() && rank == 0) timeline->open(config.timeline);
    executor = std::make_unique<Executor>(std::move(b), config, *timeline, stats);
    detail::set_log_rank(rank);
  } catch (...) {
    started->set_exception(std::current_exception());
    return;
  }
  started->set_value();

  double cycle_ms = config.cycle_time_ms;
  bool join_sent = false;
  bool shutdown_sent = false;
  // Set when this rank failed inside an agreed collective (out of memory, a device error, ...). Its peers
  // went on with that group, so whatever it issued next would pair with the wrong calls: it runs nothing more
  // and reports the failure in the next cycle, and the coordinator aborts every rank with it.
  std::string failure;
  auto last_cycle = Clock::now();
  auto last_progress = last_cycle;
  for (;;) {
    std::vector<std::shared_ptr<TensorEntry>> fresh;
    RequestList list;
    {
      std::unique_lock<std::mutex> lock(mu);
      // Submitted device requests that other ranks have not matched yet: cycle again after one poll slice
      // instead of the cycle time, so a rank whose peers submit a little later does not add a whole cycle
      // time to the collective (the cycle is a collective step, so this rank just waits inside it for the
      // others). GPU steps are short, so ranks drift apart at every group; host tensors keep the cycle time,
      // whose pauses leave the cores to the compute threads. One slice rather than none bounds the MPI
      // rounds and device polls spent waiting (a new submission wakes this thread anyway); ResNet-50 at 2
      // GPUs ran equally fast either way (benchmarks/RESULTS.md, session 6). Only while work keeps
      // completing: a stalled request (a rank that never submits) falls back to the cycle time.
      const bool eager = Clock::now() - last_progress < kEagerWindow &&
                         std::any_of(in_flight.begin(), in_flight.end(),
                                     [](const auto& kv) { return kv.second->req.device != DeviceType::CPU; });
      const auto next = eager ? last_cycle + kPollSlice
                              : last_cycle + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double, std::milli>(cycle_ms));
      auto wake = [&] {
        return !queue.empty() || (shutdown_requested && !shutdown_sent) || (join_requested && !join_sent);
      };
      // Launched device groups complete while this thread waits for the next cycle.
      while (!wake() && Clock::now() < next) {
        if (launched.empty()) {
          sleeping = !eager;
          cv.wait_until(lock, next, wake);
          sleeping = false;
          continue;
        }
        if (health->host_waiters.load() > 0) {
          lock.unlock();
          std::this_thread::yield();
        } else {
          cv.wait_until(lock, std::min(next, Clock::now() + kPollSlice), wake);
          lock.unlock();
        }
        complete_launched(false);
        lock.lock();
      }
      fresh.swap(queue);
      list.shutdown = shutdown_requested;
      list.joined = join_requested;
    }
    last_cycle = Clock::now();
    list.failure = failure;
    join_sent = list.joined;
    shutdown_sent = list.shutdown;
    list.cached_bits.assign(cache->words(), 0);
    int64_t hits = 0;
    for (auto& e : fresh) {
      if (auto slot = cache->lookup(e->req)) {
        set_bit(list.cached_bits, *slot);
        ++hits;
      } else {
        list.requests.push_back(e->req);
      }
    }

    ResponseList resp;
    try {
      resp = controller->cycle(list);
    } catch (const std::exception& e) {
      resp = ResponseList{};
      resp.abort = e.what();
    }
    if (!resp.abort.empty()) {
      KOLO_LOG(Error, resp.abort);
      executor->abort(resp.abort);
      fail_all(resp.abort);
      break;
    }
    if (resp.fusion_threshold > 0 || resp.cycle_time_ms > 0) cycle_ms = resp.cycle_time_ms;

    // The common ordered list: cached slots in slot order, then full responses in the coordinator's order.
    std::vector<Request> ready;
    for_each_bit(resp.cached_ready, [&](int64_t slot) {
      ready.push_back(cache->at(slot));
      cache->touch(slot);
    });
    std::vector<std::pair<std::shared_ptr<TensorEntry>, std::string>> failed;
    std::shared_ptr<TensorEntry> joined_done;
    int64_t join_value = -1;
    {
      // This cycle's counters are updated before its collectives run, so that the last handle completed
      // is the last thing the cycle does before this thread sleeps and its waiter runs.
      std::lock_guard<std::mutex> lock(mu);
      ++stats.cycles;
      stats.cache_hits += hits;
      if (controller->is_coordinator()) stall_report = controller->last_stall_report();
      for (auto& r : resp.responses) {
        if (r.op == OpType::Join) {
          joined_done = std::move(join_entry);
          join_value = r.params.at(0).root;
          join_requested = false;
          join_sent = false;
          continue;
        }
        if (!r.error.empty()) {
          for (const auto& name : r.names) {
            cache->erase(name);
            auto it = in_flight.find(name);
            if (it != in_flight.end() && it->second->req.process_set == r.process_set) {
              failed.emplace_back(it->second, r.error);
              in_flight.erase(it);
            }
          }
          continue;
        }
        for (auto& p : r.params) {
          cache->put(p);
          ready.push_back(std::move(p));
        }
      }
    }
    for (auto& [e, msg] : failed) e->state->finish(msg);
    if (joined_done) {
      joined_done->state->value = join_value;
      joined_done->state->finish("");
    }

    std::vector<TensorEntry*> local(ready.size(), nullptr);
    std::vector<std::shared_ptr<TensorEntry>> owners(ready.size());
    {
      std::lock_guard<std::mutex> lock(mu);
      for (size_t i = 0; i < ready.size(); ++i) {
        // The same name may be in flight here on another process set (this rank is not in the ready one).
        auto it = in_flight.find(ready[i].name);
        if (it != in_flight.end() && it->second->req.process_set == ready[i].process_set) {
          owners[i] = it->second;
          local[i] = it->second.get();
          local[i]->ready = last_cycle;
        }
      }
    }
    executor->set_chunk_bytes(config.allreduce_chunk_bytes);
    const int64_t threshold = resp.fusion_threshold > 0 ? resp.fusion_threshold : config.fusion_threshold;
    for (const FusedGroup& g : plan_fusion(ready, threshold)) {
      std::vector<TensorEntry*> items;
      std::vector<Request> params;
      items.reserve(g.items.size());
      params.reserve(g.items.size());
      for (size_t i : g.items) {  // each ready request belongs to one group: moved, not copied
        items.push_back(local[i]);
        params.push_back(std::move(ready[i]));
      }
      const bool member = executor->process_set(params[0].process_set) != nullptr;
      std::string error;
      std::unique_ptr<DeviceWork> work;
      // Splitting communicators is a collective of its own: nothing may still run on them.
      if (g.op == OpType::ProcessSetCreate) complete_launched(true);
      auto fail_here = [&](const std::exception& e) {
        error = detail::concat(e.what(), " (rank ", rank, ")");
        KOLO_LOG(Error, error);
        failure = detail::concat("kolo: rank ", rank, " failed in ", op_type_name(g.op), " '", params[0].name,
                                 "', so its collectives are out of step with the other ranks' and every rank ",
                                 "stops: ", e.what());
      };
      if (!failure.empty()) {
        error = failure;
      } else {
        try {
          executor->prepare(g.op, params[0]);
        } catch (const std::exception& e) {
          fail_here(e);
        }
      }
      if (error.empty() && (member || g.op == OpType::ProcessSetCreate)) {
        const auto t0 = Clock::now();
        for (auto* it : items)
          if (it && timeline->enabled()) {
            timeline->span(it->req.name, "NEGOTIATE", it->enqueued, it->ready);
            timeline->span(it->req.name, "QUEUE", it->ready, t0);
            timeline->span(it->req.name, "WAIT_FOR_DATA", t0, Clock::now());
          }
        {
          std::lock_guard<std::mutex> hl(health->mu);
          health->busy_since = Clock::now();
          // Assigned piecewise into the string's kept capacity: no allocation per collective.
          health->busy_what.assign(op_type_name(g.op));
          health->busy_what.append(" '").append(params[0].name).append(items.size() > 1 ? "' (fused)" : "'");
        }
        try {
          work = executor->execute(g.op, items, params);
        } catch (const std::exception& e) {
          fail_here(e);
        }
        {
          std::lock_guard<std::mutex> hl(health->mu);
          health->busy_what.clear();
        }
        if (g.op == OpType::ProcessSetCreate) {
          controller->add_process_set(params[0].root, std::vector<int>(params[0].ranks.begin(), params[0].ranks.end()));
          std::lock_guard<std::mutex> lock(mu);
          process_sets[params[0].root] = std::vector<int>(params[0].ranks.begin(), params[0].ranks.end());
        }
      }
      std::vector<std::shared_ptr<TensorEntry>> entries;
      for (size_t i : g.items) entries.push_back(owners[i]);
      if (work) {
        std::vector<std::shared_ptr<Event>> done = work->d.done_events();
        {
          std::lock_guard<std::mutex> lock(mu);
          for (const auto& e : entries)
            if (e) in_flight.erase(e->req.name);
        }
        for (const auto& e : entries)
          if (e) e->state->launch(e->output, done);
        launched.push_back({std::move(entries), std::move(work)});
        continue;
      }
      finish_group(entries, error, true);
    }
    complete_launched(false);
    if (!ready.empty()) last_progress = Clock::now();
    if (resp.shutdown) {
      complete_launched(true);
      fail_all("kolo: the runtime shut down before this collective was submitted on every rank");
      break;
    }
  }
  launched.clear();  // after an abort: fail_all has completed their handles
  timeline->close();
  {
    std::lock_guard<std::mutex> lock(mu);
    stopped = true;
  }
  cv.notify_all();
}

}  // namespace kolo
