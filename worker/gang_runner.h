// The lease loop's JobRunner for every lease: a job that runs alone goes straight to RunJob; a
// rank of a gang (JobInputs.gang.world_size > 1) first meets the other ranks over c10d
// (worker/train/data_parallel.h) and then trains its shard of each global batch. Rank 0 opens
// the rendezvous store on an ephemeral port of its advertised host and reports the address
// through gang.opened before it waits for the others.
#ifndef PEFTD_WORKER_GANG_RUNNER_H_
#define PEFTD_WORKER_GANG_RUNNER_H_

#include "worker/job_runner.h"
#include "worker/run_job.h"

namespace peftd::worker {

JobRunner MakeGangRunner(RunJobOptions options = {});

}  // namespace peftd::worker

#endif  // PEFTD_WORKER_GANG_RUNNER_H_
