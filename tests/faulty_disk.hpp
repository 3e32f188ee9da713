// A disk that fails on demand: a SQLite VFS that passes everything to the real one, except
// that a chosen write to a database or WAL file fails as on a full disk (SQLITE_FULL). While
// it lives it is the process's default VFS, so every connection opened meanwhile uses it.
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace test {

class FaultyDisk {
 public:
  FaultyDisk() {
    real_ = sqlite3_vfs_find(nullptr);
    if (real_ == nullptr) throw std::runtime_error("no default SQLite VFS");
    vfs_ = *real_;
    vfs_.zName = "crier-test-faulty-disk";
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.pAppData = this;
    vfs_.xOpen = &FaultyDisk::open;
    instance() = this;
    if (sqlite3_vfs_register(&vfs_, 1) != SQLITE_OK) throw std::runtime_error("cannot register the VFS");
  }
  ~FaultyDisk() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(real_, 1);
    instance() = nullptr;
  }
  FaultyDisk(const FaultyDisk&) = delete;
  FaultyDisk& operator=(const FaultyDisk&) = delete;

  /// The k-th write from now on (1: the next one) fails, once.
  void fail_write(int k) { countdown_.store(k); }
  /// Writes to database and WAL files so far.
  int writes() const { return writes_.load(); }
  /// How many writes were failed.
  int failed() const { return failed_.load(); }

 private:
  struct File {
    sqlite3_file base;  // first: SQLite sees a File as a sqlite3_file
    sqlite3_file* real;
    bool counted;  // a database or WAL file
  };

  static FaultyDisk*& instance() {
    static FaultyDisk* disk = nullptr;
    return disk;
  }
  static sqlite3_file* real(sqlite3_file* f) { return reinterpret_cast<File*>(f)->real; }

  static int open(sqlite3_vfs* vfs, const char* name, sqlite3_file* file, int flags, int* out_flags) {
    auto* self = static_cast<FaultyDisk*>(vfs->pAppData);
    auto* f = reinterpret_cast<File*>(file);
    f->real = reinterpret_cast<sqlite3_file*>(reinterpret_cast<char*>(file) + sizeof(File));
    f->counted = (flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL)) != 0;
    const int rc = self->real_->xOpen(self->real_, name, f->real, flags, out_flags);
    // SQLite calls xClose only when pMethods is set: set it only when the real file opened.
    f->base.pMethods = f->real->pMethods ? &methods() : nullptr;
    return rc;
  }

  static int write(sqlite3_file* file, const void* data, int amount, sqlite3_int64 offset) {
    auto* f = reinterpret_cast<File*>(file);
    FaultyDisk* self = instance();
    if (f->counted && self) {
      self->writes_.fetch_add(1);
      if (self->countdown_.load() > 0 && self->countdown_.fetch_sub(1) == 1) {
        self->failed_.fetch_add(1);
        return SQLITE_FULL;
      }
    }
    return f->real->pMethods->xWrite(f->real, data, amount, offset);
  }

  static const sqlite3_io_methods& methods() {
    static const sqlite3_io_methods m = {
        3,
        [](sqlite3_file* f) {
          const int rc = real(f)->pMethods->xClose(real(f));
          f->pMethods = nullptr;
          return rc;
        },
        [](sqlite3_file* f, void* p, int n, sqlite3_int64 o) { return real(f)->pMethods->xRead(real(f), p, n, o); },
        &FaultyDisk::write,
        [](sqlite3_file* f, sqlite3_int64 size) { return real(f)->pMethods->xTruncate(real(f), size); },
        [](sqlite3_file* f, int flags) { return real(f)->pMethods->xSync(real(f), flags); },
        [](sqlite3_file* f, sqlite3_int64* size) { return real(f)->pMethods->xFileSize(real(f), size); },
        [](sqlite3_file* f, int lock) { return real(f)->pMethods->xLock(real(f), lock); },
        [](sqlite3_file* f, int lock) { return real(f)->pMethods->xUnlock(real(f), lock); },
        [](sqlite3_file* f, int* out) { return real(f)->pMethods->xCheckReservedLock(real(f), out); },
        [](sqlite3_file* f, int op, void* arg) { return real(f)->pMethods->xFileControl(real(f), op, arg); },
        [](sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); },
        [](sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); },
        [](sqlite3_file* f, int region, int size, int extend, void volatile** p) {
          return real(f)->pMethods->xShmMap(real(f), region, size, extend, p);
        },
        [](sqlite3_file* f, int offset, int n, int flags) {
          return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
        },
        [](sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); },
        [](sqlite3_file* f, int remove) { return real(f)->pMethods->xShmUnmap(real(f), remove); },
        [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return real(f)->pMethods->xFetch(real(f), o, n, p); },
        [](sqlite3_file* f, sqlite3_int64 o, void* p) { return real(f)->pMethods->xUnfetch(real(f), o, p); },
    };
    return m;
  }

  sqlite3_vfs* real_ = nullptr;
  sqlite3_vfs vfs_{};
  std::atomic<int> countdown_{0};
  std::atomic<int> writes_{0};
  std::atomic<int> failed_{0};
};

}  // namespace test
