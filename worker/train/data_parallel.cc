#include "worker/train/data_parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace peftd::train {
namespace {

using Clock = std::chrono::steady_clock;

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::string ErrorText(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

bool LooksLikeTimeout(const std::string& text) {
  const std::string lower = absl::AsciiStrToLower(text);
  return lower.find("timeout") != std::string::npos || lower.find("timed out") != std::string::npos;
}

// Gloo writes to its peers with writev, which cannot ask for MSG_NOSIGNAL. When a peer process
// dies (kill -9 of another rank's worker), the next write to it raises SIGPIPE, whose default
// action killed this whole worker and every other job it ran, instead of failing the collective
// with EPIPE, which the attempt reports and the server requeues. Ignored once per process, as
// soon as it joins a group.
void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

}  // namespace

struct DataParallel::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

class DataParallel::Pending {
 public:
  c10::intrusive_ptr<c10d::Work> work;  // null: no group, or it failed to start (`error`)
  absl::Status error;
  std::string what;
  Clock::time_point started;
  // When the collective completed, set on Gloo's thread (0: not yet seen).
  std::shared_ptr<std::atomic<int64_t>> end_ns = std::make_shared<std::atomic<int64_t>>(0);
};

void DataParallel::PendingDeleter::operator()(Pending* pending) const {
  if (pending && pending->work) {
    try {
      pending->work->wait();
    } catch (const std::exception&) {  // the owner has an error of its own to report
    }
  }
  delete pending;
}

absl::StatusOr<std::pair<std::string, uint16_t>> ParseRendezvous(const std::string& value,
                                                                 const std::string& field) {
  const size_t colon = value.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(value.substr(colon + 1), &port) || port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": '", value, "' is not host:port (port 1..65535)"));
  }
  std::string host = value.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);  // [::1]:29500
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

DataParallel::DataParallel(DataParallelOptions options, std::unique_ptr<Group> group)
    : options_(std::move(options)), group_(std::move(group)) {}

DataParallel::~DataParallel() = default;

absl::StatusOr<std::unique_ptr<DataParallel>> DataParallel::Connect(
    const DataParallelOptions& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("world size must be at least 1, got ", options.world_size));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank must be in [0, ", options.world_size, "), got ", options.rank));
  }
  if (options.world_size == 1) {
    return std::unique_ptr<DataParallel>(new DataParallel(options, nullptr));
  }
  if (options.key.empty()) return absl::InvalidArgumentError("rendezvous key must not be empty");
  IgnoreSigpipe();
  if (options.timeout.count() <= 0) {
    return absl::InvalidArgumentError("rendezvous timeout must be positive");
  }
  std::string rendezvous = options.rendezvous;
  const bool pick_port = options.rank == 0 && absl::EndsWith(rendezvous, ":0");
  // ParseRendezvous refuses port 0, which only rank 0 may ask for.
  if (pick_port) rendezvous.back() = '1';
  ASSIGN_OR_RETURN(auto address, ParseRendezvous(rendezvous, "rendezvous"));
  if (pick_port) address.second = 0;
  const auto& [host, port] = address;
  const std::string where = absl::StrCat("rendezvous ", options.rendezvous, " (key ", options.key,
                                         ", rank ", options.rank, " of ", options.world_size, ")");
  auto group = std::make_unique<Group>();
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer = options.rank == 0;
    store_options.numWorkers = options.world_size;
    // The process group's own exchange of addresses waits for the others, bounded by the same
    // timeout; waiting here as well would only repeat it.
    store_options.waitWorkers = false;
    store_options.timeout = options.timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(host, store_options);
    if (options.rank == 0 && options.listening) options.listening(tcp->getPort());
    group->store = c10::make_intrusive<c10d::PrefixStore>(options.key, tcp);
    auto pg_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    // Ranks on one machine talk over loopback; across machines each binds the address its own
    // hostname resolves to.
    pg_options->devices.push_back(IsLoopback(host)
                                      ? c10d::ProcessGroupGloo::createDeviceForHostname(host)
                                      : c10d::ProcessGroupGloo::createDefaultDevice());
    pg_options->threads = 1;
    group->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(group->store, options.rank,
                                                            options.world_size, pg_options);
  } catch (const std::exception& e) {
    const std::string text = ErrorText(e);
    if (LooksLikeTimeout(text)) {
      return absl::DeadlineExceededError(
          absl::StrCat(where, ": not every rank arrived within ",
                       std::chrono::duration<double>(options.timeout).count(), "s (", text, ")"));
    }
    return absl::UnavailableError(absl::StrCat(where, ": ", text));
  }
  return std::unique_ptr<DataParallel>(new DataParallel(options, std::move(group)));
}

absl::Status DataParallel::CollectiveError(const std::exception& e, const std::string& what) const {
  const std::string text = ErrorText(e);
  const std::string message = absl::StrCat("allreduce of ", what, " (rank ", options_.rank, " of ",
                                           options_.world_size, "): ", text);
  return LooksLikeTimeout(text) ? absl::DeadlineExceededError(message)
                                : absl::UnavailableError(message);
}

void DataParallel::AddBusy(Clock::time_point start, Clock::time_point end) {
  // Gloo runs one collective at a time: one started while another ran began when that ended.
  start = std::max(start, last_end_);
  if (end > start) allreduce_busy_seconds_ += std::chrono::duration<double>(end - start).count();
  last_end_ = std::max(last_end_, end);
}

absl::Status DataParallel::AllReduce(torch::Tensor flat, bool max, const std::string& what) {
  const auto start = Clock::now();
  try {
    std::vector<at::Tensor> tensors{std::move(flat)};
    c10d::AllreduceOptions opts;
    opts.reduceOp = max ? c10d::ReduceOp::MAX : c10d::ReduceOp::SUM;
    group_->pg->allreduce(tensors, opts)->wait();
  } catch (const std::exception& e) {
    return CollectiveError(e, what);
  }
  const auto end = Clock::now();
  allreduce_seconds_ += std::chrono::duration<double>(end - start).count();
  AddBusy(start, end);
  return absl::OkStatus();
}

DataParallel::PendingSum DataParallel::StartSum(torch::Tensor flat, const std::string& what) {
  PendingSum pending(new Pending);
  pending->what = what;
  pending->started = Clock::now();
  if (!group_) return pending;
  if (!flat.is_contiguous()) {
    pending->error = absl::InternalError(absl::StrCat("allreduce of ", what, ": not contiguous"));
    return pending;
  }
  try {
    std::vector<at::Tensor> tensors{flat.view({-1})};
    pending->work = group_->pg->allreduce(tensors, c10d::AllreduceOptions{});
    pending->work->getFuture()->addCallback([end = pending->end_ns](c10::ivalue::Future&) {
      end->store(Clock::now().time_since_epoch().count());
    });
  } catch (const std::exception& e) {
    pending->error = CollectiveError(e, what);
  }
  return pending;
}

absl::Status DataParallel::Wait(PendingSum pending) {
  if (!pending || !pending->work) return pending ? pending->error : absl::OkStatus();
  const auto start = Clock::now();
  try {
    pending->work->wait();
  } catch (const std::exception& e) {
    pending->work.reset();
    return CollectiveError(e, pending->what);
  }
  pending->work.reset();
  const auto now = Clock::now();
  allreduce_seconds_ += std::chrono::duration<double>(now - start).count();
  // The completion callback may run after wait() returns: then it ended about now.
  const int64_t end_ns = pending->end_ns->load();
  const Clock::time_point end = end_ns > 0 ? Clock::time_point(Clock::duration(end_ns)) : now;
  AddBusy(pending->started, std::min(end, now));
  return absl::OkStatus();
}

absl::Status DataParallel::Sum(const std::vector<torch::Tensor>& tensors, const std::string& what) {
  if (!group_ || tensors.empty()) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  if (tensors.size() == 1 && tensors[0].is_contiguous()) {
    return AllReduce(tensors[0].view({-1}), /*max=*/false, what);
  }
  for (const auto& t : tensors) {
    if (t.scalar_type() != tensors[0].scalar_type()) {
      return absl::InternalError(absl::StrCat("allreduce of ", what, ": mixed dtypes"));
    }
  }
  std::vector<torch::Tensor> flat;
  flat.reserve(tensors.size());
  for (const auto& t : tensors) flat.push_back(t.reshape({-1}));
  torch::Tensor buffer = torch::cat(flat);
  RETURN_IF_ERROR(AllReduce(buffer, /*max=*/false, what));
  int64_t offset = 0;
  for (const auto& t : tensors) {
    const int64_t n = t.numel();
    t.copy_(buffer.narrow(0, offset, n).view(t.sizes()));
    offset += n;
  }
  return absl::OkStatus();
}

absl::Status DataParallel::Max(const torch::Tensor& tensor, const std::string& what) {
  if (!group_) return absl::OkStatus();
  torch::NoGradGuard no_grad;
  torch::Tensor flat = tensor.contiguous().view({-1});
  RETURN_IF_ERROR(AllReduce(flat, /*max=*/true, what));
  if (flat.data_ptr() != tensor.data_ptr()) tensor.copy_(flat.view(tensor.sizes()));
  return absl::OkStatus();
}

}  // namespace peftd::train
