#include "server/gang_placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

std::string Plural(int n, const char* one, const char* many) {
  return absl::StrCat(n, " ", n == 1 ? one : many);
}

}  // namespace

GangPlan PlaceGang(int world, const std::string& prefer, const std::vector<WorkerSlots>& workers) {
  GangPlan plan;
  std::vector<const WorkerSlots*> free;
  int free_slots = 0;
  for (const WorkerSlots& w : workers) {
    if (w.free > 0) {
      free.push_back(&w);
      free_slots += w.free;
    }
  }
  const int live = static_cast<int>(workers.size());
  if (live < world) {
    plan.never_fits = true;
    plan.waiting_reason = absl::StrCat(
        "needs ", Plural(world, "slot", "slots"), " on distinct workers; the server has ",
        live == 0 ? "no live worker" : Plural(live, "live worker", "live workers"),
        " (start more workers or lower workers)");
    return plan;
  }
  if (static_cast<int>(free.size()) < world) {
    plan.waiting_reason = absl::StrCat(
        "waiting for ", Plural(world, "free slot", "free slots"), " on distinct workers; ",
        free_slots, " free on ",
        Plural(static_cast<int>(free.size()), "live worker", "live workers"), " of ", live);
    return plan;
  }
  std::stable_sort(free.begin(), free.end(), [](const WorkerSlots* a, const WorkerSlots* b) {
    return a->free != b->free ? a->free > b->free : a->worker_id < b->worker_id;
  });
  auto first = std::find_if(free.begin(), free.end(),
                            [&](const WorkerSlots* w) { return w->worker_id == prefer; });
  if (first != free.end()) std::rotate(free.begin(), first, first + 1);
  for (int r = 0; r < world; ++r) plan.rank_workers.push_back(free[r]->worker_id);
  return plan;
}

}  // namespace peftd::server
