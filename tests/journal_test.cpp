// The SQLite store's publish journal on its own: order across files, the progress a mover
// records, back-pressure, and what a dead process's file gives back.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>

#include <csignal>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "../src/sqlite/journal.hpp"
#include "durable_events.hpp"

using crier::sqlite::Journal;
using crier::sqlite::RecordView;
using namespace std::chrono_literals;

namespace {

// Views `id` and `data`: they must outlive the record.
RecordView record_of(std::string_view id, std::string_view data) {
  RecordView r;
  r.id = id;
  r.type = "com.example.test.job";
  r.source = "/test";
  r.time = "2026-11-27T09:00:00Z";
  r.datacontenttype = "application/json";
  r.extensions = "{}";
  r.data = data;
  return r;
}

void append_one(Journal& j, const std::string& id) {
  const std::string data = "{\"n\":\"" + id + "\",\"pad\":\"" + std::string(200, 'p') + "\"}";
  const RecordView r = record_of(id, data);
  j.append(std::span<const RecordView>(&r, 1));
}

std::size_t files_in(const std::string& dir) {
  std::size_t n = 0;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) n += std::string(e->d_name).ends_with(".log") ? 1 : 0;
    ::closedir(d);
  }
  return n;
}

// Moves everything there is, as the store's mover does, and checks what a recovery relies
// on: within a file, every record taken lies at or past the progress recorded before, below
// the batch's progress, and the next batch starts exactly there.
class Mover {
 public:
  explicit Mover(Journal& j) : j_(j) {}
  // The ids moved, in the order taken.
  std::vector<std::string> move_all() {
    std::vector<std::string> ids;
    Journal::Batch batch;
    while (j_.take(batch, 37)) {
      if (batch.file != file_) {
        file_ = batch.file;
        progress_ = 1;
      }
      for (const RecordView& r : batch.records) {
        EXPECT_GE(r.jseq, progress_) << "a record before the recorded progress";
        EXPECT_LT(r.jseq, batch.progress);
        ids.emplace_back(r.id);
      }
      if (!batch.records.empty()) {
        EXPECT_EQ(batch.records.front().jseq, progress_) << "a gap in " << file_;
      }
      progress_ = batch.progress;
      j_.moved(batch);
    }
    return ids;
  }

 private:
  Journal& j_;
  std::string file_;
  std::uint64_t progress_ = 0;
};

std::vector<std::string> move_all(Journal& j) { return Mover(j).move_all(); }

Journal::Limits small_files(std::size_t max_files) {
  Journal::Limits limits;
  limits.file_bytes = 64 << 10;
  limits.max_files = max_files;
  return limits;
}

TEST(Journal, RecordsComeBackInOrderAcrossFilesWhichGoOnceMoved) {
  test::ScratchDir dir;
  const std::string where = dir.file("j");
  Journal j(where, small_files(1000));
  std::vector<std::string> appended;
  for (int i = 0; i < 2000; ++i) {  // about 500 KB: eight or so files
    appended.push_back("id-" + std::to_string(i));
    append_one(j, appended.back());
  }
  // A batch of records in one append stays together and in order.
  const std::string data = "{}";
  std::vector<std::string> ids = {"batch-a", "batch-b", "batch-c"};
  std::vector<RecordView> views;
  for (const auto& id : ids) views.push_back(record_of(id, data));
  j.append(views);
  appended.insert(appended.end(), ids.begin(), ids.end());
  EXPECT_GT(files_in(where), 4u);
  EXPECT_EQ(j.backlog(), appended.size());

  EXPECT_EQ(move_all(j), appended);
  EXPECT_EQ(j.backlog(), 0u);
  EXPECT_EQ(files_in(where), 1u) << "every file but the one being written is deleted once moved";
  EXPECT_EQ(j.close().size(), 1u);
  EXPECT_EQ(files_in(where), 0u);
}

TEST(Journal, ASyncingJournalGivesBackTheSame) {
  test::ScratchDir dir;
  Journal::Limits limits = small_files(1000);
  limits.sync_each = true;
  Journal j(dir.file("j"), limits);
  std::vector<std::string> appended;
  for (int i = 0; i < 600; ++i) {  // past two files
    appended.push_back("id-" + std::to_string(i));
    append_one(j, appended.back());
  }
  EXPECT_EQ(move_all(j), appended);
}

TEST(Journal, WhenFilesPileUpAppendWaitsForTheMoverThenFails) {
  test::ScratchDir dir;
  Journal::Limits limits = small_files(2);
  limits.wait_for_room = 20ms;
  Journal j(dir.file("j"), limits);
  Mover mover(j);
  int acknowledged = 0;
  try {
    for (;; ++acknowledged) append_one(j, "id-" + std::to_string(acknowledged));
  } catch (const crier::Error& e) {
    EXPECT_EQ(e.code(), crier::Errc::transport_error);
    EXPECT_NE(std::string(e.what()).find("not keeping up"), std::string::npos) << e.what();
  }
  EXPECT_GT(acknowledged, 300);  // two files of 64 KB
  EXPECT_LT(acknowledged, 600);
  EXPECT_EQ(mover.move_all().size(), static_cast<std::size_t>(acknowledged)) << "the refused one is not there";
  append_one(j, "after");  // room again
  EXPECT_EQ(mover.move_all(), std::vector<std::string>{"after"});
}

TEST(Journal, AppendsBlockedOnAFullJournalGoOnAsTheMoverMoves) {
  test::ScratchDir dir;
  Journal::Limits limits = small_files(2);
  limits.wait_for_room = 60s;
  Journal j(dir.file("j"), limits);
  std::atomic<bool> done{false};
  std::vector<std::string> moved;
  std::thread mover([&] {
    Mover m(j);
    while (!done.load() || j.backlog() != 0) {
      const auto got = m.move_all();
      moved.insert(moved.end(), got.begin(), got.end());
      if (got.empty()) j.wait(1ms);
    }
  });
  constexpr int kPerThread = 1500, kThreads = 4;  // ten times what the journal may hold
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t)
    writers.emplace_back([&j, t] {
      for (int i = 0; i < kPerThread; ++i) append_one(j, std::to_string(t) + "-" + std::to_string(i));
    });
  for (auto& w : writers) w.join();
  done = true;
  mover.join();
  ASSERT_EQ(moved.size(), static_cast<std::size_t>(kPerThread * kThreads));
  // Each writer's records in its own order.
  std::vector<int> next(kThreads, 0);
  for (const std::string& id : moved) {
    const int t = id[0] - '0';
    EXPECT_EQ(id, std::to_string(t) + "-" + std::to_string(next[t]));
    ++next[t];
  }
}

TEST(Journal, ClosingEndsAnAppendWaitingForRoom) {
  test::ScratchDir dir;
  Journal::Limits limits = small_files(2);
  limits.wait_for_room = 60s;
  Journal j(dir.file("j"), limits);
  std::string error;
  std::thread writer([&] {
    try {
      for (int i = 0;; ++i) append_one(j, "id-" + std::to_string(i));
    } catch (const crier::Error& e) {
      error = e.what();
    }
  });
  j.stop_waits();  // before or after the writer started waiting: either way it gives up
  writer.join();
  EXPECT_NE(error.find("closing"), std::string::npos) << error;
}

TEST(Journal, ADeadProcessesFileGivesBackEveryWholeRecord) {
  test::ScratchDir dir;
  const std::string where = dir.file("j");
  std::vector<std::string> appended;
  {
    Journal j(where, small_files(1000));
    for (int i = 0; i < 700; ++i) {
      appended.push_back("id-" + std::to_string(i));
      append_one(j, appended.back());
    }
  }  // gone without close(): its files stay, unlocked, as a killed process leaves them
  std::vector<std::string> recovered;
  std::size_t files = 0;
  crier::sqlite::recover_orphans(where, [&](const std::string&, std::string_view bytes) {
    ++files;
    auto records = crier::sqlite::scan_records(bytes);
    std::sort(records.begin(), records.end(), [](const RecordView& a, const RecordView& b) { return a.jseq < b.jseq; });
    for (const RecordView& r : records) recovered.emplace_back(r.id);
    return true;
  });
  EXPECT_GE(files, 2u);
  std::sort(recovered.begin(), recovered.end());
  std::sort(appended.begin(), appended.end());
  EXPECT_EQ(recovered, appended);
  EXPECT_EQ(files_in(where), 0u) << "finished files are deleted";
}

// Another process opening the store looks for orphans while this one makes a journal file:
// it must never find the new file unlocked (it took it for an orphan, deleted it, and the
// journal failed with "cannot lock the journal" or wrote into a deleted file).
TEST(Journal, ANewFileIsNeverTakenForAnOrphan) {
  test::ScratchDir dir;
  const std::string where = dir.file("j");
  std::atomic<bool> done{false};
  std::string error;
  std::thread maker([&] {
    try {
      for (int i = 0; i < 1000; ++i) {
        Journal j(where, small_files(4));
        j.close();
      }
    } catch (const std::exception& e) {
      error = e.what();
    }
    done = true;
  });
  int looks = 0;
  while (!done) {
    crier::sqlite::recover_orphans(where, [](const std::string&, std::string_view) { return true; });
    ++looks;
  }
  maker.join();
  EXPECT_EQ(error, "") << "after " << looks << " looks for orphans";
}

// Another process opens a journal file just before its own process finishes it, deletes it and
// lets go of its lock: that file is not an orphan, and its events are in the database already
// (and its progress row may be gone), so it must not be finished again.
TEST(Journal, AFileItsProcessFinishedAndDeletedIsNoOrphan) {
  test::ScratchDir dir;
  const std::string where = dir.file("j");
  std::string path;
  int fd = -1;
  {
    Journal j(where, small_files(1000));
    append_one(j, "id-1");
    DIR* d = ::opendir(where.c_str());
    ASSERT_NE(d, nullptr);
    while (dirent* e = ::readdir(d))
      if (std::string(e->d_name).ends_with(".log")) path = where + "/" + e->d_name;
    ::closedir(d);
    ASSERT_FALSE(path.empty());
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);  // as another process's recover_orphans
    ASSERT_GE(fd, 0);
    EXPECT_EQ(move_all(j), std::vector<std::string>{"id-1"});
    EXPECT_FALSE(j.close().empty()) << "all of it moved: its files are deleted";
  }
  int finished = 0;
  crier::sqlite::recover_orphan(fd, path, [&](const std::string&, std::string_view) {
    ++finished;
    return true;
  });
  EXPECT_EQ(finished, 0) << "a file its own process finished was finished again";
}

TEST(Journal, ScanningSkipsARecordLeftHalfWrittenOrDamaged) {
  std::string bytes;
  const std::string data = "{\"n\":1}";
  for (const char* id : {"first", "torn", "second", "damaged", "third"}) {
    RecordView r = record_of(id, data);
    r.jseq = bytes.size() + 1;
    crier::sqlite::encode_record(r, bytes);
  }
  // A writer killed mid-copy leaves its record without the magic, which is stored last.
  const std::size_t torn = bytes.find("torn");
  const std::size_t torn_start = bytes.rfind("CRIE", torn);
  ASSERT_NE(torn_start, std::string::npos);
  bytes.replace(torn_start, 4, std::string(4, '\0'));
  // A record damaged on the disk fails its CRC.
  bytes[bytes.find("damaged") + 1] ^= 0x20;
  std::vector<std::string> ids;
  for (const RecordView& r : crier::sqlite::scan_records(bytes)) ids.emplace_back(r.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"first", "second", "third"}));
}

// Files may not grow past `bytes` while it lives (how a full disk looks to a writer).
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);  // a write past it fails with EFBIG instead
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &limit);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

TEST(Journal, WhenTheFileCannotGrowAppendFailsAndWorksAgainOnceItCan) {
  test::ScratchDir dir;
  Journal::Limits limits;
  limits.file_bytes = 32 << 20;  // grown 8 MiB at a time
  Journal j(dir.file("j"), limits);
  Mover mover(j);
  int acknowledged = 0;
  {
    const FileSizeLimit full(4 << 20);  // below what the journal already holds
    try {
      for (;; ++acknowledged) append_one(j, "id-" + std::to_string(acknowledged));
    } catch (const crier::Error& e) {
      EXPECT_EQ(e.code(), crier::Errc::transport_error);
      EXPECT_NE(std::string(e.what()).find("cannot extend the journal"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("not stored"), std::string::npos) << e.what();
    }
    EXPECT_GT(acknowledged, 20000);  // the 8 MiB allocated before: records of about 300 bytes
    // Still full: a new file cannot be made either.
    EXPECT_THROW(append_one(j, "refused"), crier::Error);
    // Nor can a store open for writing, and it says so rather than speak of an event.
    try {
      Journal other(dir.file("j2"), limits);
      ADD_FAILURE() << "a journal opened without room";
    } catch (const crier::Error& e) {
      EXPECT_NE(std::string(e.what()).find("the store cannot be opened for writing"), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find("event"), std::string::npos) << e.what();
    }
  }
  append_one(j, "after");  // room again: in a new file
  std::vector<std::string> expected;
  for (int i = 0; i < acknowledged; ++i) expected.push_back("id-" + std::to_string(i));
  expected.push_back("after");
  EXPECT_EQ(mover.move_all(), expected);
}

}  // namespace
