#include "storage/data_dir_lock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace peftd::storage {
namespace {

namespace fs = std::filesystem;

fs::path Dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("peftd_lock_" + name + std::to_string(getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

TEST(DataDirLock, ASecondHolderIsRefusedWithThePidOfTheFirst) {
  const fs::path dir = Dir("two");
  auto first = DataDirLock::Acquire(dir.string());
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = DataDirLock::Acquire(dir.string());
  ASSERT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(absl::StrCat("pid ", getpid())), std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("--data-dir"), std::string::npos);
  first->reset();
  EXPECT_TRUE(DataDirLock::Acquire(dir.string()).ok());  // released with its holder
}

TEST(DataDirLock, AKilledHolderLeavesNoStaleLock) {
  const fs::path dir = Dir("killed");
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  if (child == 0) {
    auto held = DataDirLock::Acquire(dir.string());
    const char ok = held.ok() ? '1' : '0';
    if (write(ready[1], &ok, 1) != 1) _exit(1);
    pause();
    _exit(0);
  }
  char ok = 0;
  ASSERT_EQ(read(ready[0], &ok, 1), 1);
  ASSERT_EQ(ok, '1');
  EXPECT_TRUE(absl::IsFailedPrecondition(DataDirLock::Acquire(dir.string()).status()));
  kill(child, SIGKILL);
  int status;
  waitpid(child, &status, 0);
  EXPECT_TRUE(DataDirLock::Acquire(dir.string()).ok());
}

}  // namespace
}  // namespace peftd::storage
