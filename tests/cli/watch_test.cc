// watch: events until the final state, resumed after the last event id when the stream drops,
// the exit code from the final state, and --json lines.
#include "clients/cli/watch.h"

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "fake_job_service.h"
#include "nlohmann/json.hpp"

namespace peftd::cli {
namespace {

using testing::FakeServer;
using testing::RunCli;
using testing::RunResult;

class WatchTest : public ::testing::Test {
 protected:
  // Five events for j-1: two progress events, then the end in `final_state`.
  void Script(v1::JobState final_state) {
    std::lock_guard<std::mutex> lock(server_.service.mu);
    auto add = [&](int64_t id, v1::JobState state, const std::string& message, int64_t step) {
      v1::JobEvent e;
      e.set_id(id);
      e.set_job_id("j-1");
      e.set_level(v1::JobEvent::INFO);
      e.set_state(state);
      e.set_message(message);
      if (step > 0) {
        e.set_phase(v1::TRAINING);
        e.mutable_progress()->set_step(step);
        e.mutable_progress()->set_total_steps(4);
        e.mutable_progress()->set_train_loss(2.0 / step);
      }
      server_.service.events.push_back(e);
    };
    add(10, v1::QUEUED, "waiting for a worker", 0);
    add(11, v1::RUNNING, "leased by worker w-1", 0);
    // Progress events carry the server's text of the progress, which the lines leave out.
    add(12, v1::RUNNING, "TRAINING step 2/4 loss 1.0000", 2);
    add(13, v1::RUNNING, "TRAINING step 4/4 loss 0.5000", 4);
    add(14, final_state, "finished", 0);
    v1::Job& job = server_.service.jobs["j-1"];
    job.set_state(final_state);
    job.mutable_progress()->set_step(4);
    job.mutable_progress()->set_total_steps(4);
    job.mutable_progress()->set_train_loss(0.5);
    if (final_state == v1::FAILED) {
      job.mutable_error()->set_message("worker lost 3 times");
      job.mutable_error()->set_blame(v1::JobError::SYSTEM);
    }
  }
  RunResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--server", server_.address()});
    return RunCli(std::move(args));
  }
  FakeServer server_;
};

TEST_F(WatchTest, PlainLinesThenTheOutcome) {
  Script(v1::SUCCEEDED);
  RunResult r = Run({"watch", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 7u) << r.out;  // 5 events + outcome + hint
  EXPECT_TRUE(absl::StrContains(lines[1], "running  leased by worker w-1")) << r.out;
  EXPECT_TRUE(absl::StrContains(lines[2], "running/training  step 2/4  loss 1")) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "TRAINING step")) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[5], "job j-1 succeeded: 4/4 steps, loss 0.5")) << r.out;
  EXPECT_EQ(lines[6], "  next: peftctl download j-1");
}

TEST_F(WatchTest, ResumesAfterTheLastEventWhenTheStreamDrops) {
  Script(v1::SUCCEEDED);
  server_.service.watch_drop_after = 3;  // the first stream dies after events 10, 11, 12
  RunResult r = Run({"watch", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(server_.service.watch_after_ids, (std::vector<int64_t>{0, 12}));
  EXPECT_TRUE(absl::StrContains(r.err, "resuming after event 12")) << r.err;
  // Every event exactly once.
  for (const char* text : {"waiting for a worker", "leased", "step 2/4", "step 4/4", "finished"}) {
    EXPECT_EQ(std::vector<std::string>(absl::StrSplit(r.out, text)).size(), 2u) << text << r.out;
  }
}

TEST_F(WatchTest, ExitCodeFollowsTheFinalState) {
  Script(v1::FAILED);
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 7);
  EXPECT_TRUE(absl::StrContains(r.out, "job j-1 failed (attempt 1): worker lost 3 times")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "submitting again may succeed")) << r.out;
}

TEST_F(WatchTest, CancelledExits8) {
  Script(v1::CANCELLED);
  RunResult r = Run({"watch", "j-1"});
  EXPECT_EQ(r.code, 8);
  EXPECT_TRUE(absl::StrContains(r.out, "job j-1 cancelled at step 4/4")) << r.out;
}

TEST_F(WatchTest, JsonLinesEventsThenJob) {
  Script(v1::SUCCEEDED);
  server_.service.watch_drop_after = 2;
  RunResult r = Run({"watch", "j-1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.err.empty()) << r.err;  // no notes in machine mode
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 6u) << r.out;
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = nlohmann::json::parse(lines[i], nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << lines[i];
    if (i < 5) {
      EXPECT_EQ(j["event"]["id"], std::to_string(10 + i));
    } else {
      EXPECT_EQ(j["job"]["state"], "SUCCEEDED");
    }
  }
}

TEST_F(WatchTest, ResumeFromAGivenEventAndSubmitWatch) {
  Script(v1::SUCCEEDED);
  RunResult r = Run({"watch", "j-1", "--after", "13"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(server_.service.watch_after_ids.back(), 13);
  EXPECT_FALSE(absl::StrContains(r.out, "leased")) << r.out;
  // submit --watch follows the new job: the fake streams nothing for it and GetJob says QUEUED,
  // so the watch keeps asking until --reconnect-timeout gives up.
  r = Run({"submit", "--model", "m", "--method", "lora", "--train", "ds-1", "--watch",
           "--reconnect-timeout", "0.3"});
  EXPECT_EQ(r.code, 6);
  EXPECT_TRUE(absl::StrContains(r.out, "submitted job j-2")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "could not get it back")) << r.err;
}

// A server shutting down cancels open streams: CANCELLED is retried like UNAVAILABLE (before: exit
// 1 at once), and giving up after --reconnect-timeout is exit 6 whatever the last code was.
TEST_F(WatchTest, ServerCancelledStreamIsResumed) {
  Script(v1::SUCCEEDED);
  server_.service.watch_drop_after = 2;
  server_.service.watch_drop_code = grpc::StatusCode::CANCELLED;
  RunResult r = Run({"watch", "j-1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(server_.service.watch_after_ids, (std::vector<int64_t>{0, 11}));
  server_.service.forced = grpc::Status(grpc::StatusCode::CANCELLED, "server shutting down");
  r = Run({"watch", "j-1", "--reconnect-timeout", "0.3"});
  EXPECT_EQ(r.code, 6) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "could not get it back")) << r.err;
}

v1::JobEvent Event(v1::JobState state, v1::JobPhase phase, int64_t step) {
  v1::JobEvent e;
  e.set_state(state);
  e.set_phase(phase);
  if (step > 0) {
    auto* p = e.mutable_progress();
    p->set_step(step);
    p->set_total_steps(100);
    p->set_train_loss(3.25);
    p->set_eta_seconds(90);
    p->set_tokens_per_second(1500);
  }
  return e;
}

// Attempt 2 starts from a checkpoint: until its first report the line shows no loss, rate or ETA
// of attempt 1. A cancelled job shows neither rate nor ETA.
TEST(LiveLine, NewAttemptDropsTheOldNumbers) {
  LiveLine line(ProgressStyle{});
  line.Update(Event(v1::RUNNING, v1::TRAINING, 40));
  std::string text = line.Render(150);
  EXPECT_TRUE(absl::StrContains(text, "loss 3.2500")) << text;
  EXPECT_TRUE(absl::StrContains(text, "ETA 1m30s")) << text;
  line.Update(Event(v1::QUEUED, v1::JOB_PHASE_UNSPECIFIED, 0));
  line.Update(Event(v1::RUNNING, v1::LOADING_MODEL, 0));
  text = line.Render(150);
  EXPECT_TRUE(absl::StrContains(text, "loss -")) << text;
  EXPECT_FALSE(absl::StrContains(text, "ETA 1m30s")) << text;
  EXPECT_FALSE(absl::StrContains(text, "1.50k tok/s")) << text;
  line.Update(Event(v1::RUNNING, v1::TRAINING, 45));
  EXPECT_TRUE(absl::StrContains(line.Render(150), "loss 3.2500"));
  line.Update(Event(v1::CANCELLED, v1::JOB_PHASE_UNSPECIFIED, 0));
  text = line.Render(150);
  EXPECT_FALSE(absl::StrContains(text, "ETA")) << text;
  EXPECT_FALSE(absl::StrContains(text, "tok/s")) << text;
}

TEST_F(WatchTest, UnknownJobExits3) {
  RunResult r = Run({"watch", "j-404"});
  EXPECT_EQ(r.code, 3);
  EXPECT_TRUE(absl::StrContains(r.err, "watching job j-404: no job j-404")) << r.err;
}

}  // namespace
}  // namespace peftd::cli
