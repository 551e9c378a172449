// Data parallelism over c10d (LibTorch's torch.distributed): a TCPStore rendezvous (rank 0 serves
// it) and a Gloo process group, and the collectives the trainer needs. Every rank computes the
// gradient of its shard of the global batch against the global target count, so summing
// gradients over ranks gives the gradient of the whole batch: 2 ranks x batch b train as one rank
// with batch 2b. No home-made collective: every reduction is ProcessGroupGloo::allreduce.
//
// The c10d headers stay in data_parallel.cc (they need USE_C10D_GLOO and pull in gloo); this
// header is plain LibTorch.
#ifndef PEFTD_WORKER_TRAIN_DATA_PARALLEL_H_
#define PEFTD_WORKER_TRAIN_DATA_PARALLEL_H_

#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace peftd::train {

struct DataParallelOptions {
  int rank = 0;
  int world_size = 1;
  // host:port of rank 0's TCPStore. Rank 0 listens on the port; the others connect to it. Rank
  // 0 may give port 0: the system picks a free one, which `listening` reports.
  std::string rendezvous;
  // Rank 0: called with the port its store listens on, before it waits for the other ranks
  // (the lease loop tells the server, which hands the address to them).
  std::function<void(uint16_t port)> listening;
  // Unique to the attempt: every store key is prefixed with it, so a late rank of an earlier
  // attempt never meets this one.
  std::string key = "peftd";
  // Bounds the rendezvous (a rank that never arrives) and every collective (a rank that died).
  std::chrono::milliseconds timeout{std::chrono::seconds(60)};
};

// "host:port" -> (host, port); InvalidArgument naming `field` otherwise.
absl::StatusOr<std::pair<std::string, uint16_t>> ParseRendezvous(const std::string& value,
                                                                 const std::string& field);

class DataParallel {
 public:
  // Meets every rank. InvalidArgument on a bad rank, world size or address; DeadlineExceeded
  // naming the rendezvous when not every rank arrived within the timeout. A world of 1 needs no
  // rendezvous and every collective is a no-op. A world above 1 makes the process ignore
  // SIGPIPE: a peer that dies fails the collective instead of killing this process.
  static absl::StatusOr<std::unique_ptr<DataParallel>> Connect(const DataParallelOptions& options);
  ~DataParallel();

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }

  // Sums every tensor over the ranks, in place. Tensors of one dtype go through one buffer (one
  // allreduce): a single contiguous tensor is reduced where it lies. `what` names the reduction
  // in errors.
  absl::Status Sum(const std::vector<torch::Tensor>& tensors, const std::string& what);
  // Element-wise maximum over the ranks, in place (int64 or floating).
  absl::Status Max(const torch::Tensor& tensor, const std::string& what);

  // An allreduce under way (StartSum). Dropping one that was not waited for waits for it, so
  // the collective never writes into a buffer its owner has moved on from.
  class Pending;
  struct PendingDeleter {
    void operator()(Pending* pending) const;
  };
  using PendingSum = std::unique_ptr<Pending, PendingDeleter>;
  // Starts summing the contiguous tensor `flat` over the ranks, in place, and returns at once:
  // Gloo runs the collective on its own thread while the caller computes (the gradient buckets
  // overlap the backward pass this way). Every rank must start its collectives in the same
  // order. Errors (a rank that died) surface in Wait.
  PendingSum StartSum(torch::Tensor flat, const std::string& what);
  // Waits for a StartSum; DeadlineExceeded or Unavailable naming `what` when it failed.
  absl::Status Wait(PendingSum pending);

  // Wall-clock seconds this rank waited for collectives so far: a collective that ran while the
  // rank computed (StartSum) counts only for the time Wait blocked. This is the allreduce time a
  // step actually pays.
  double allreduce_seconds() const { return allreduce_seconds_; }
  // Wall-clock seconds collectives were running, whether or not the rank waited for them
  // (collectives run one after the other on Gloo's one thread, so their spans do not overlap).
  double allreduce_busy_seconds() const { return allreduce_busy_seconds_; }

 private:
  struct Group;
  DataParallel(DataParallelOptions options, std::unique_ptr<Group> group);
  absl::Status AllReduce(torch::Tensor flat, bool max, const std::string& what);
  // A collective's exception as a status naming `what` and this rank.
  absl::Status CollectiveError(const std::exception& e, const std::string& what) const;
  // Adds a collective that ran from `start` to `end` (steady clock) to the busy time.
  void AddBusy(std::chrono::steady_clock::time_point start,
               std::chrono::steady_clock::time_point end);

  DataParallelOptions options_;
  std::unique_ptr<Group> group_;
  double allreduce_seconds_ = 0;
  double allreduce_busy_seconds_ = 0;
  std::chrono::steady_clock::time_point last_end_{};
};

}  // namespace peftd::train

#endif  // PEFTD_WORKER_TRAIN_DATA_PARALLEL_H_
