#include "server/attempt_policy.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace peftd::server {
namespace {

v1::JobState Fail(v1::Job& job, const std::string& text, std::string* message) {
  v1::JobError* error = job.mutable_error();
  error->set_code(static_cast<int>(absl::StatusCode::kUnavailable));
  error->set_blame(v1::JobError::SYSTEM);
  error->set_message(text);
  *message = absl::StrCat("failed: ", text);
  return v1::FAILED;
}

}  // namespace

const v1::Checkpoint* NewestCheckpoint(const v1::Job& job) {
  const v1::Checkpoint* best = nullptr;
  for (const auto& cp : job.checkpoints()) {
    if (best == nullptr || cp.step() > best->step() ||
        (cp.step() == best->step() && cp.attempt() > best->attempt())) {
      best = &cp;
    }
  }
  return best;
}

std::vector<std::pair<int, int64_t>> TrimCheckpoints(v1::Job& job, int keep) {
  keep = std::max(keep, 1);
  std::vector<v1::Checkpoint> all(job.checkpoints().begin(), job.checkpoints().end());
  if (static_cast<int>(all.size()) <= keep) return {};
  std::sort(all.begin(), all.end(), [](const v1::Checkpoint& a, const v1::Checkpoint& b) {
    return a.step() != b.step() ? a.step() < b.step() : a.attempt() < b.attempt();
  });
  const size_t drop = all.size() - static_cast<size_t>(keep);
  std::vector<std::pair<int, int64_t>> dropped;
  for (size_t i = 0; i < drop; ++i) dropped.emplace_back(all[i].attempt(), all[i].step());
  job.clear_checkpoints();
  for (size_t i = drop; i < all.size(); ++i) *job.add_checkpoints() = all[i];
  return dropped;
}

bool AttemptMadeProgress(const v1::Job& job) {
  for (const auto& cp : job.checkpoints()) {
    if (cp.attempt() == job.attempt()) return true;
  }
  return false;
}

v1::JobState ApplyLostAttempt(v1::Job& job, const AttemptLoss& loss, std::string* message) {
  const int attempt = job.attempt();
  const int64_t step = job.progress().step();
  std::string cost;
  if (AttemptMadeProgress(job)) {
    job.set_crashes_without_progress(0);
    cost = "it checkpointed, so it costs no retry";
  } else if (loss.cause == LossCause::kServerRestarted) {
    cost = "lost to a server restart, it costs no retry";
  } else {
    job.set_attempts_charged(job.attempts_charged() + 1);
    if (loss.cause == LossCause::kWorkerDied) {
      job.set_crashes_without_progress(job.crashes_without_progress() + 1);
      if (job.crashes_without_progress() >= kMaxCrashesWithoutProgress) {
        return Fail(job,
                    absl::StrCat("crash loop: the worker died ", job.crashes_without_progress(),
                                 " times in a row without a new checkpoint, the last at step ",
                                 step, " (", loss.why,
                                 "); not retried: check the worker's log and memory (an "
                                 "out-of-memory kill is SIGKILL), then resubmit"),
                    message);
      }
    }
    if (job.attempts_charged() >= job.spec().max_attempts()) {
      return Fail(job,
                  absl::StrCat("lost its worker without progress ", job.attempts_charged(),
                               " times (max_attempts ", job.spec().max_attempts(),
                               "; last: ", loss.why, "); resubmit, or raise max_attempts"),
                  message);
    }
    cost = absl::StrCat("retry ", job.attempts_charged(), " of ", job.spec().max_attempts() - 1,
                        " used");
  }
  job.set_attempt(attempt + 1);
  // Steps past the newest checkpoint die with the attempt: the next one resumes there, so the
  // job's progress (and its progress events) never show a step that no attempt will keep.
  const v1::Checkpoint* resume = NewestCheckpoint(job);
  job.mutable_progress()->set_step(resume == nullptr ? 0 : resume->step());
  *message = absl::StrCat("attempt ", attempt, " lost (", loss.why, "; ", cost,
                          "); queued as attempt ", attempt + 1, ", resuming ",
                          resume == nullptr
                              ? "from the start"
                              : absl::StrCat("from the checkpoint of step ", resume->step()));
  return v1::QUEUED;
}

}  // namespace peftd::server
