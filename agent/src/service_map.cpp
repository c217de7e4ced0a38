#include "stallscope/detail/service_map.hpp"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <tuple>
#include <utility>

#include "stallscope/detail/series.hpp"
#include "stallscope/detail/task_recorder.hpp"

namespace stallscope::detail {

constinit thread_local std::uint32_t tls_thread_user = 0;

namespace {

// Thread users seen, by the name the map shows: index 0 is "thread" (no name of its own), the
// others "thread " + the OS name with a trailing run of digits folded into "*" (see
// thread_map_name). Past the cap, a thread is "thread" too.
constexpr std::size_t kMaxThreadNames = 64;

struct ThreadNames {
  std::mutex mu;
  std::vector<std::string> names{"thread"};
};
ThreadNames& thread_names() {
  static auto* t = new ThreadNames;  // never destroyed: threads may note users at exit
  return *t;
}

// What the map calls a thread whose OS name is `name`: "thread io-*" for "io-3", so that a pool's
// numbered threads are one user, the same in every run and on every machine (a checked-in map
// stays valid when the pool grows), and a thread never reads as a task name.
std::string thread_map_name(std::string_view name) {
  std::size_t end = name.size();
  while (end > 0 && name[end - 1] >= '0' && name[end - 1] <= '9') --end;
  std::string out = "thread ";
  out.append(name.substr(0, end));
  if (end < name.size()) out += '*';
  return out;
}

struct BookEntry {
  ResourceKind kind = ResourceKind::kLock;
  std::string name;
  std::int64_t objects = 0;
  bool counted = false;
  std::map<std::string, std::set<std::uint64_t>> numbers;
  std::map<std::string, std::set<std::string>> texts;
  std::vector<std::pair<UserRole, const UserSet*>> users;
};

struct Book {
  std::mutex mu;
  std::map<std::uint32_t, BookEntry> by_series;
  std::vector<GroupEntry*> groups;
  std::atomic<std::uint64_t> shutdown_seq{0};
};
Book& book() {
  static auto* b = new Book;  // never destroyed: wrappers outlive static destruction
  return *b;
}

// Caller holds book().mu.
BookEntry& entry(const Series& s) {
  BookEntry& e = book().by_series[s.id()];
  if (e.name.empty()) {
    e.kind = s.kind();
    e.name = s.name();
  }
  return e;
}

}  // namespace

std::uint32_t thread_user() noexcept {
  if (tls_thread_user != 0) return tls_thread_user;
  std::uint32_t index = 0;
  char buf[16] = {};
#if defined(__linux__)
  if (pthread_getname_np(pthread_self(), buf, sizeof buf) != 0) buf[0] = '\0';
  // A thread nobody named carries the process's name (the kernel's 15 characters of it).
  const std::string_view process(program_invocation_short_name);
  const std::string_view name(buf);
  if (!name.empty() && name != process.substr(0, sizeof buf - 1)) {
    try {
      const std::string shown = thread_map_name(name);
      ThreadNames& t = thread_names();
      std::lock_guard lock(t.mu);
      auto it = std::find(t.names.begin(), t.names.end(), shown);
      if (it != t.names.end()) {
        index = static_cast<std::uint32_t>(it - t.names.begin());
      } else if (t.names.size() < kMaxThreadNames) {
        index = static_cast<std::uint32_t>(t.names.size());
        t.names.push_back(shown);
      }
    } catch (...) {
      index = 0;  // out of memory: "thread"
    }
  }
#endif
  tls_thread_user = kThreadUser | index;
  return tls_thread_user;
}

void UserSet::note(std::uint32_t user) noexcept {
  for (auto& slot : named_) {
    std::uint32_t v = slot.load(std::memory_order_acquire);
    if (v == 0 && slot.compare_exchange_strong(v, user, std::memory_order_acq_rel)) return;
    if (v == user) return;  // v: what the slot holds (the CAS's winner if it lost)
  }
  std::lock_guard lock(mu_);
  try {
    more_.insert(user);
  } catch (...) {
    // Out of memory: this user goes uncounted.
  }
}

std::vector<std::uint32_t> UserSet::named() const {
  std::vector<std::uint32_t> out;
  for (const auto& slot : named_) {
    const std::uint32_t v = slot.load(std::memory_order_acquire);
    if (v == 0) break;
    out.push_back(v);
  }
  return out;
}

std::uint64_t UserSet::more() const {
  std::lock_guard lock(mu_);
  return more_.size();
}

std::uint32_t current_user() noexcept {
  if (const SliceContext* sc = tls_slice) return sc->series->id();
  return thread_user();
}

void note_user_slow(UserSet& set, std::atomic<const void*>& last, const void* key) noexcept {
  last.store(key, std::memory_order_relaxed);
  set.note(current_user());
}

std::string user_name(std::uint32_t user) {
  if ((user & kThreadUser) == 0) return Registry::global().series_name(user);
  ThreadNames& t = thread_names();
  std::lock_guard lock(t.mu);
  const std::uint32_t i = user & ~kThreadUser;
  return i < t.names.size() ? t.names[i] : t.names[0];
}

void map_users(const Series& series, UserRole role, const UserSet& set) {
  std::lock_guard lock(book().mu);
  entry(series).users.emplace_back(role, &set);
}

void map_fact(const Series& series, std::string_view key, std::uint64_t value) noexcept {
  try {
    std::lock_guard lock(book().mu);
    entry(series).numbers[std::string(key)].insert(value);
  } catch (...) {
    // Out of memory: the map lacks this fact.
  }
}

void map_fact(const Series& series, std::string_view key, std::string_view value) noexcept {
  try {
    std::lock_guard lock(book().mu);
    entry(series).texts[std::string(key)].emplace(value);
  } catch (...) {
  }
}

void map_object(const Series& series, int delta) noexcept {
  try {
    std::lock_guard lock(book().mu);
    BookEntry& e = entry(series);
    e.counted = true;
    e.objects += delta;
  } catch (...) {
  }
}

void link_group(GroupEntry* group) {
  std::lock_guard lock(book().mu);
  book().groups.push_back(group);
}

void unlink_group(GroupEntry* group) noexcept {
  std::lock_guard lock(book().mu);
  std::erase(book().groups, group);
}

std::uint64_t next_shutdown_seq() noexcept {
  return book().shutdown_seq.fetch_add(1, std::memory_order_relaxed) + 1;
}

MapSnapshot take_map_snapshot() {
  MapSnapshot out;
  std::vector<GroupEntry::Info> infos;
  std::vector<BookEntry> entries;
  {
    // Group descriptions take each group's own mutex (held by the group only briefly, never by
    // user code); series names are resolved after this lock is released, since the registry
    // calls map_users() under its own.
    std::lock_guard lock(book().mu);
    infos.reserve(book().groups.size());
    for (const GroupEntry* g : book().groups) infos.push_back(g->describe());
    for (const auto& [id, e] : book().by_series) entries.push_back(e);
  }

  std::map<std::string, MapGroup> groups;
  for (GroupEntry::Info& info : infos) {
    MapGroup& g = groups[info.name];
    g.name = info.name;
    ++g.objects;
    g.tokens.push_back(info.token);
    g.parent_tokens.push_back(info.parent_token);
    if (info.cancelled) ++g.cancelled;
    if (info.closed) ++g.closed;
    if (info.shutdown_seq != 0) g.shutdown_seqs.push_back(info.shutdown_seq);
    g.more_tasks += info.more_tasks;
    for (GroupEntry::Task& t : info.tasks) {
      auto it = std::find_if(g.tasks.begin(), g.tasks.end(),
                             [&](const GroupEntry::Task& x) { return x.name == t.name; });
      if (it == g.tasks.end()) {
        g.tasks.push_back(std::move(t));
      } else {
        it->live += t.live;
        it->spawned += t.spawned;
      }
    }
  }
  for (auto& [name, g] : groups) {
    std::sort(g.shutdown_seqs.begin(), g.shutdown_seqs.end());
    std::sort(g.tasks.begin(), g.tasks.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    out.groups.push_back(std::move(g));
  }

  for (const BookEntry& e : entries) {
    MapResource r;
    r.kind = e.kind;
    r.name = e.name;
    r.objects = e.counted ? e.objects : -1;
    for (const auto& [k, v] : e.numbers) r.numbers[k].assign(v.begin(), v.end());
    for (const auto& [k, v] : e.texts) r.texts[k].assign(v.begin(), v.end());
    for (const auto& [role, set] : e.users) {
      MapUsers& u = r.users[role];
      for (const std::uint32_t id : set->named()) {
        (id & kThreadUser ? u.threads : u.tasks).push_back(user_name(id));
      }
      u.more += set->more();
      for (auto* names : {&u.tasks, &u.threads}) {
        std::sort(names->begin(), names->end());
        names->erase(std::unique(names->begin(), names->end()), names->end());
      }
    }
    out.resources.push_back(std::move(r));
  }
  std::sort(out.resources.begin(), out.resources.end(), [](const auto& a, const auto& b) {
    return std::tie(a.kind, a.name) < std::tie(b.kind, b.name);
  });
  return out;
}

}  // namespace stallscope::detail
