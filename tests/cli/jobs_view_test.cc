// `get`, `events` and the final line of `watch` as strings: the gate's numbers for gated jobs,
// accuracy for classification, the merged model, no stale rate or ETA, and event ids.
#include "clients/cli/jobs_view.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/time/clock.h"

namespace peftd::cli {
namespace {

v1::Job GatedJob() {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::RUNNING);
  job.set_phase(v1::TRAINING);
  job.mutable_spec()->set_method(v1::LORA);
  job.mutable_spec()->mutable_token_gate()->set_enabled(true);
  auto* p = job.mutable_progress();
  p->set_step(20);
  p->set_total_steps(60);
  p->set_train_loss(5.5);
  p->set_eta_seconds(30);
  p->set_tokens_per_second(2000);
  for (double tau : {0.01, 0.03}) p->add_gates()->set_tau(tau);
  return job;
}

// token-gate.md says to read sparsity and tau: `get` shows both for a gated job, 0% included
// (before: hidden at 0, tau never shown).
TEST(FormatJobDetails, GatedJobShowsSparsityAndMeanTau) {
  const std::string text = FormatJobDetails(GatedJob(), absl::Now());
  EXPECT_TRUE(absl::StrContains(text, "sparsity 0.0%")) << text;
  EXPECT_TRUE(absl::StrContains(text, "mean tau 0.02 over 2 modules")) << text;
}

TEST(FormatJobDetails, CancelledJobHasNoEtaOrRate) {
  v1::Job job = GatedJob();
  job.set_state(v1::CANCELLED);
  const std::string text = FormatJobDetails(job, absl::Now());
  EXPECT_FALSE(absl::StrContains(text, "ETA")) << text;
  EXPECT_FALSE(absl::StrContains(text, "tok/s")) << text;
  EXPECT_TRUE(absl::StrContains(text, "step 20/60")) << text;
}

// Issue 13: a gang shows its world size, the global batch, each rank's worker and figures, and
// while queued why it waits.
TEST(FormatJobDetails, GangShowsWorldGlobalBatchRanksAndWhyItWaits) {
  v1::Job job = GatedJob();
  job.mutable_spec()->set_workers(2);
  job.mutable_spec()->set_batch_size(4);
  job.mutable_spec()->set_gradient_accumulation_steps(3);
  job.add_rank_worker_ids("w1");
  job.add_rank_worker_ids("w2");
  job.mutable_progress()->add_rank_step_seconds(0.5);
  job.mutable_progress()->add_rank_step_seconds(0.25);
  job.mutable_progress()->add_rank_allreduce_seconds(1.5);
  job.mutable_progress()->add_rank_allreduce_seconds(2);
  std::string text = FormatJobDetails(job, absl::Now());
  EXPECT_TRUE(absl::StrContains(text, "2 ranks (global batch 4 x 3 x 2 = 24 sequences)")) << text;
  EXPECT_TRUE(absl::StrContains(text, "w1, step 0.500s, allreduce 1.500s")) << text;
  EXPECT_TRUE(absl::StrContains(text, "w2, step 0.250s, allreduce 2.000s")) << text;
  job.set_state(v1::QUEUED);
  job.set_waiting_reason(
      "waiting for 2 free slots on distinct workers; 1 free on 1 live worker of 2");
  text = FormatJobDetails(job, absl::Now());
  EXPECT_TRUE(absl::StrContains(text, "waiting:")) << text;
  EXPECT_TRUE(absl::StrContains(text, "1 free on 1 live worker of 2")) << text;
  // A job alone says nothing of ranks.
  job.mutable_spec()->set_workers(1);
  EXPECT_FALSE(absl::StrContains(FormatJobDetails(job, absl::Now()), "ranks")) << text;
}

TEST(FormatJobDetails, RunningWithoutAStepIsNotNotStarted) {
  v1::Job job;
  job.set_id("job-2");
  job.set_state(v1::RUNNING);
  job.set_phase(v1::TRAINING);
  const std::string text = FormatJobDetails(job, absl::Now());
  EXPECT_FALSE(absl::StrContains(text, "not started")) << text;
  EXPECT_TRUE(absl::StrContains(text, "no step reported yet")) << text;
  job.set_state(v1::QUEUED);
  EXPECT_TRUE(absl::StrContains(FormatJobDetails(job, absl::Now()), "not started"));
}

TEST(FormatJobDetails, MergedModelAndAccuracyAreMentioned) {
  v1::Job job;
  job.set_id("job-3");
  job.set_state(v1::SUCCEEDED);
  job.mutable_spec()->set_export_merged(true);
  job.mutable_spec()->set_task(v1::SEQ_CLS);
  job.mutable_spec()->set_num_labels(2);
  job.mutable_spec()->set_validation_dataset_id("ds-v");
  auto* p = job.mutable_progress();
  p->set_step(10);
  p->set_total_steps(10);
  p->set_train_loss(0.5);
  p->set_has_eval(true);
  p->set_eval_loss(0.6);
  p->set_eval_accuracy(0.9);
  const std::string text = FormatJobDetails(job, absl::Now());
  EXPECT_TRUE(absl::StrContains(text, "peftctl download job-3 --merged")) << text;
  EXPECT_TRUE(absl::StrContains(text, "acc 90.0%")) << text;
  const std::string outcome = FormatOutcome(job);
  EXPECT_TRUE(absl::StrContains(outcome, "eval accuracy 90.0%")) << outcome;
}

TEST(FormatOutcome, GatedJobEndsWithTheGate) {
  v1::Job job = GatedJob();
  job.set_state(v1::SUCCEEDED);
  job.mutable_progress()->set_gate_sparsity(0.25);
  const std::string outcome = FormatOutcome(job);
  EXPECT_TRUE(absl::StrContains(outcome, "gate sparsity 25.0% (mean tau 0.02)")) << outcome;
}

// `events --after N` and `watch --after N` take event ids: the lines show them.
TEST(FormatEventLine, ShowsTheEventId) {
  v1::JobEvent e;
  e.set_id(1234);
  e.set_level(v1::JobEvent::INFO);
  e.set_state(v1::QUEUED);
  e.set_message("queued");
  const std::string line = FormatEventLine(e);
  EXPECT_TRUE(absl::StrContains(line, "#1234")) << line;
}

// A job failed by ten long records: one line each, the advice once (issue 18).
TEST(FormatOutcome, BadLinesOfAFailedJobAreListedOneALine) {
  v1::Job job;
  job.set_id("job-4");
  job.set_state(v1::FAILED);
  job.set_attempt(1);
  job.mutable_error()->set_message(
      "training_dataset_id 'ds-1': train.jsonl: 2 bad lines: line 1: record is 14 tokens, longer "
      "than max_seq_len 8; line 2: record is 15 tokens, longer than max_seq_len 8; shorten the "
      "long records, raise max_seq_len or set truncate: true");
  job.mutable_error()->set_line(1);
  const std::string outcome = FormatOutcome(job);
  EXPECT_TRUE(absl::StrContains(outcome,
                                "training_dataset_id 'ds-1': train.jsonl: 2 bad lines\n"
                                "    line 1: record is 14 tokens, longer than max_seq_len 8\n"
                                "    line 2: record is 15 tokens, longer than max_seq_len 8\n"
                                "    shorten the long records, raise max_seq_len or set "
                                "truncate: true (line 1)"))
      << outcome;
}

}  // namespace
}  // namespace peftd::cli
