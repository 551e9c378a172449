// Gang placement (issue 13, docs/operating.md "Gangs"): where the ranks of a data-parallel job
// go. All or nothing: a gang of N is placed only when N live workers each have a free slot now,
// and then every rank at once; otherwise nothing is taken and the job waits with a reason.
//
// One rank per worker: the worker keys its running attempts by job id, so two ranks of one job
// cannot share a worker process (a multi-slot worker still runs ranks of different gangs).
//
// Pure functions of the scheduler's view of its workers, so every rule is tested without one.
#ifndef PEFTD_SERVER_GANG_PLACEMENT_H_
#define PEFTD_SERVER_GANG_PLACEMENT_H_

#include <string>
#include <vector>

namespace peftd::server {

// A live worker as the scheduler sees it.
struct WorkerSlots {
  std::string worker_id;
  int free = 0;  // slots free now: its last reported free slots less those promised since
};

struct GangPlan {
  // The worker of each rank when placed; empty when not.
  std::vector<std::string> rank_workers;
  // When not placed: why, for `peftctl get` ("waiting for 2 free slots; 1 free on 1 live
  // worker").
  std::string waiting_reason;
  // Fewer live workers than ranks: the gang cannot be placed however long it waits, so it must
  // not hold back the jobs behind it.
  bool never_fits = false;
  bool placed() const { return !rank_workers.empty(); }
};

// Places a gang of `world` (>= 2) ranks. Rank 0 goes to `prefer` (the worker whose heartbeat is
// being answered, so the rendezvous opens at once) when it has a free slot, else to the first
// worker with one; the other ranks follow in order of most free slots, then worker id, so a plan
// is deterministic.
GangPlan PlaceGang(int world, const std::string& prefer, const std::vector<WorkerSlots>& workers);

}  // namespace peftd::server

#endif  // PEFTD_SERVER_GANG_PLACEMENT_H_
