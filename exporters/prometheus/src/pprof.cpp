// The contention profiles in pprof's format: profile.proto (github.com/google/pprof, proto/
// profile.proto) encoded by hand -- the few messages a profile needs take less code than a
// protobuf dependency -- and gzip-compressed as pprof expects.
//
// Symbolizing: libbacktrace, the DWARF reader GCC ships in libgcc-12-dev (libbacktrace.a, part
// of build-essential: no package to add). It gives function, file and line for each return
// address, inlined frames included, reading the debug information of the running binary and its
// shared libraries. Boost.Stacktrace's backtrace backend wraps the same library (and needs an
// extra package); libdw would too (libdw-dev). Without libbacktrace (another toolchain) the
// names come from dladdr's dynamic symbols, without files and lines.
#include "stallscope/pprof.hpp"

#include <cxxabi.h>
#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <fmt/format.h>

#include "http_server.hpp"
#include "pprof_detail.hpp"
#if STALLSCOPE_HAVE_LIBBACKTRACE
#include <backtrace.h>
#endif

namespace stallscope {

namespace {

using detail::ProfileBaseline;

// --- protobuf wire format ----------------------------------------------------------------------

class Proto {
 public:
  void varint(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void tag(std::uint32_t field, std::uint32_t wire) { varint((std::uint64_t{field} << 3) | wire); }
  // A varint field, left out when 0 (proto3).
  void uint(std::uint32_t field, std::uint64_t v) {
    if (v == 0) return;
    tag(field, 0);
    varint(v);
  }
  void sint(std::uint32_t field, std::int64_t v) { uint(field, static_cast<std::uint64_t>(v)); }
  void boolean(std::uint32_t field, bool v) { uint(field, v ? 1 : 0); }
  void bytes(std::uint32_t field, std::string_view b) {
    tag(field, 2);
    varint(b.size());
    out_.append(b);
  }
  void message(std::uint32_t field, const Proto& m) { bytes(field, m.out_); }
  // A packed repeated varint field.
  template <class T>
  void packed(std::uint32_t field, const std::vector<T>& vs) {
    if (vs.empty()) return;
    Proto p;
    for (T v : vs) p.varint(static_cast<std::uint64_t>(v));
    bytes(field, p.out_);
  }
  const std::string& str() const noexcept { return out_; }

 private:
  std::string out_;
};

// --- symbolization ---------------------------------------------------------------------------

using Frame = detail::SourceFrame;

std::string demangle(const char* name) {
  if (name == nullptr) return {};
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> d(
      abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

class Symbolizer {
 public:
  // The frames at return address `pc`, innermost (inlined) first. Cached per address.
  const std::vector<Frame>& frames(std::uintptr_t pc) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(pc);
    if (it != cache_.end()) return it->second;
    return cache_.emplace(pc, lookup(pc)).first->second;
  }

 private:
  std::vector<Frame> lookup(std::uintptr_t pc) {
    std::vector<Frame> out;
    const std::uintptr_t call = pc - 1;  // a return address: the call is the byte before
#if STALLSCOPE_HAVE_LIBBACKTRACE
    if (state_ == nullptr) state_ = backtrace_create_state(nullptr, 1, &ignore_error, nullptr);
    if (state_ != nullptr) {
      backtrace_pcinfo(state_, call, &on_pcinfo, &ignore_error, &out);
      // The symbol table names the outermost function in full (namespace, class, parameters);
      // DWARF's name of a function without a linkage name is the bare identifier.
      std::string name;
      backtrace_syminfo(state_, call, &on_syminfo, &ignore_error, &name);
      if (!name.empty()) {
        if (out.empty()) out.push_back(Frame{});
        out.back().function = std::move(name);
      }
    }
#endif
    if (out.empty() || out.front().function.empty()) {
      Dl_info info{};
      if (dladdr(reinterpret_cast<void*>(call), &info) != 0 && info.dli_sname != nullptr) {
        out.assign(1, Frame{demangle(info.dli_sname), info.dli_fname ? info.dli_fname : "", 0});
      }
    }
    if (out.empty()) out.push_back(Frame{fmt_address(pc), {}, 0});
    if (in_runtime(call)) {
      for (Frame& f : out) f.runtime = true;
    }
    return out;
  }

  // Whether `call` lies in the C library, the C++ runtime or a sanitizer runtime (by the shared
  // object's file name). Their frames are told apart by object, not by source path: glibc's
  // debug information names files relative ("./nptl/...", "../sysdeps/..."), and so does the
  // application's own when it is built with -ffile-prefix-map (Debian's default flags) or
  // through ccache with base_dir set.
  static bool in_runtime(std::uintptr_t call) {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(call), &info) == 0 || info.dli_fname == nullptr) {
      return false;
    }
    std::string_view object = info.dli_fname;
    object.remove_prefix(object.rfind('/') == std::string_view::npos ? 0 : object.rfind('/') + 1);
    for (std::string_view lib :
         {"libc.so", "libc-", "libpthread", "ld-linux", "libgcc_s", "libstdc++", "libc++",
          "libtsan", "libasan", "libubsan", "liblsan", "libclang_rt"}) {
      if (object.starts_with(lib)) return true;
    }
    return false;
  }

  static std::string fmt_address(std::uintptr_t pc) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%zx", static_cast<std::size_t>(pc));
    return buf;
  }

#if STALLSCOPE_HAVE_LIBBACKTRACE
  static void ignore_error(void*, const char*, int) {}
  static int on_pcinfo(void* data, std::uintptr_t, const char* file, int line, const char* fn) {
    auto* out = static_cast<std::vector<Frame>*>(data);
    if (fn == nullptr && file == nullptr) return 0;
    out->push_back(Frame{demangle(fn), file != nullptr ? file : "", line});
    return 0;
  }
  static void on_syminfo(void* data, std::uintptr_t, const char* name, std::uintptr_t,
                         std::uintptr_t) {
    *static_cast<std::string*>(data) = demangle(name);
  }
  backtrace_state* state_ = nullptr;  // libbacktrace's; lives as long as the process
#endif
  std::mutex mu_;
  std::unordered_map<std::uintptr_t, std::vector<Frame>> cache_;
};

Symbolizer& symbolizer() {
  static auto* const s = new Symbolizer;  // leaked: libbacktrace's state cannot be freed anyway
  return *s;
}

// stallscope's own frames (and the std lock helpers around them), trimmed from the top of each
// stack as Go trims its runtime's. By name, and by file for debug information that names
// functions without their namespaces (clang's -gline-tables-only, -gmlt).
bool is_own_function(std::string_view fn) {
  // A template's demangled name starts with its return type: "void stallscope::...".
  const std::size_t paren = fn.find('(');
  const std::string_view name = fn.substr(0, paren);
  return name.starts_with("stallscope::") || name.find(" stallscope::") != std::string_view::npos ||
         (name.starts_with("std::") && name.find("<stallscope::") != std::string_view::npos);
}
// stallscope's headers (in its tree or installed: .../include/stallscope/) and the library's own
// sources, named from STALLSCOPE_SOURCE_DIR or relative to the build directory (Ninja's form).
bool is_own_file(std::string_view file) {
  if (file.find("/include/stallscope/") != std::string_view::npos ||
      file.starts_with("include/stallscope/")) {
    return true;
  }
  constexpr std::string_view kSourceDir = STALLSCOPE_SOURCE_DIR "/";
  std::string_view rest = file;
  if (rest.starts_with(kSourceDir)) {
    rest.remove_prefix(kSourceDir.size());
  } else {
    while (rest.starts_with("../") || rest.starts_with("./"))
      rest.remove_prefix(rest.find('/') + 1);
  }
  return rest.starts_with("agent/src/") || rest.starts_with("exporters/prometheus/src/");
}
bool is_own(const Frame& f) { return is_own_function(f.function) || is_own_file(f.file); }
// The C++ standard library's inline functions (std::lock_guard's constructor, std::scoped_lock).
// Under -gmlt a frame is named "lock_guard", in a file such as
// /usr/bin/../lib/gcc/x86_64-linux-gnu/12/../../../../include/c++/12/bits/std_mutex.h.
bool is_std(const Frame& f) {
  return f.function.starts_with("std::") || f.file.find("/include/c++/") != std::string_view::npos;
}
// Frames that may sit between stallscope's own ones (the C library under a lock, a signal
// frame, the standard library's inline lock functions).
bool is_system(const Frame& f) {
  const std::string_view fn = f.function, file = f.file;
  return f.runtime || fn.empty() || is_std(f) || fn.starts_with("_") || fn.starts_with("0x") ||
         fn.starts_with("pthread_") || file.starts_with("/usr/include/");
}

// The index of the first frame of `n` (frame(i) gives each, innermost first) after stallscope's
// own, the system frames among them and the standard library's right after them (the
// std::lock_guard that called into the wrapper); 0 when nothing else is left.
template <class FrameAt>
std::size_t first_user_frame(std::size_t n, FrameAt&& frame) {
  std::size_t start = 0;
  bool own_seen = false;
  for (std::size_t i = 0; i < n; ++i) {
    const Frame& f = frame(i);
    if (is_own(f)) {
      start = i + 1;
      own_seen = true;
    } else if (own_seen && start == i && is_std(f)) {
      start = i + 1;
    } else if (!is_system(f)) {
      break;
    }
  }
  return start >= n ? 0 : start;  // nothing but stallscope and the C library: keep it
}

// --- the profile -----------------------------------------------------------------------------

class Builder {
 public:
  Builder() { intern(""); }

  std::uint64_t intern(const std::string& s) {
    auto [it, added] = strings_.emplace(s, strings_.size());
    if (added) order_.push_back(s);
    return it->second;
  }

  void add(const ProfileSample& s) {
    std::vector<std::uint64_t> locations;
    // Every frame of the stack, with the return address each came from.
    std::vector<std::pair<std::uintptr_t, const Frame*>> frames;
    for (std::uintptr_t pc : s.pcs) {
      for (const Frame& f : symbolizer().frames(pc)) frames.emplace_back(pc, &f);
    }
    const std::size_t start = first_user_frame(
        frames.size(), [&](std::size_t i) -> const Frame& { return *frames[i].second; });
    // One location per address, holding its frames from `start` on.
    for (std::size_t i = start; i < frames.size();) {
      const std::uintptr_t pc = frames[i].first;
      std::size_t j = i;
      while (j < frames.size() && frames[j].first == pc) ++j;
      locations.push_back(location(pc, i, j, frames));
      i = j;
    }
    if (locations.empty()) {
      const std::string what = "stallscope: waiting on " + s.kind + " \"" + s.resource + "\"" +
                               (s.in_progress ? " (stack not read)" : "");
      locations.push_back(synthetic(what));
    }
    Proto sample;
    sample.packed(1, locations);
    sample.packed(2, std::vector<std::int64_t>{static_cast<std::int64_t>(s.count + 0.5),
                                               static_cast<std::int64_t>(s.delay_ns + 0.5)});
    label(sample, "kind", s.kind);
    label(sample, "resource", s.resource);
    label(sample, "op", s.op);
    if (!s.task.empty()) label(sample, "task", s.task);
    if (s.in_progress) label(sample, "wait", "in_progress");
    samples_.push_back(std::move(sample));
  }

  std::string finish(std::chrono::nanoseconds duration) {
    Proto p;
    const std::uint64_t contentions = intern("contentions"), count = intern("count");
    const std::uint64_t delay = intern("delay"), nanoseconds = intern("nanoseconds");
    p.message(1, value_type(contentions, count));
    p.message(1, value_type(delay, nanoseconds));
    for (const Proto& s : samples_) p.message(2, s);
    Proto mapping;  // one mapping that says every location is symbolized already
    mapping.uint(1, 1);
    mapping.uint(3, ~std::uint64_t{0});
    mapping.uint(5, intern("[stallscope]"));
    for (std::uint32_t f = 7; f <= 10; ++f) mapping.boolean(f, true);
    p.message(3, mapping);
    for (const Proto& l : locations_) p.message(4, l);
    for (const Proto& f : functions_) p.message(5, f);
    // Last: interning is done.
    for (const std::string& s : order_) p.bytes(6, s);
    p.sint(9, std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count());
    p.sint(10, duration.count());
    p.message(11, value_type(contentions, count));
    p.sint(12, 1);
    return p.str();
  }

 private:
  static Proto value_type(std::uint64_t type, std::uint64_t unit) {
    Proto v;
    v.uint(1, type);
    v.uint(2, unit);
    return v;
  }
  void label(Proto& sample, const std::string& key, const std::string& value) {
    Proto l;
    l.uint(1, intern(key));
    l.uint(2, intern(value));
    sample.message(3, l);
  }
  std::uint64_t function(const Frame& f) {
    const auto key = std::make_pair(f.function, f.file);
    auto it = functions_by_.find(key);
    if (it != functions_by_.end()) return it->second;
    const std::uint64_t id = functions_.size() + 1;
    Proto fn;
    fn.uint(1, id);
    fn.uint(2, intern(f.function));
    fn.uint(3, intern(f.function));
    fn.uint(4, intern(f.file));
    functions_.push_back(std::move(fn));
    functions_by_.emplace(key, id);
    return id;
  }
  std::uint64_t location(std::uintptr_t pc, std::size_t from, std::size_t to,
                         const std::vector<std::pair<std::uintptr_t, const Frame*>>& frames) {
    // The address's frames may be cut by the trimming: key by how many are kept.
    const auto key = std::make_pair(pc, to - from);
    auto it = locations_by_.find(key);
    if (it != locations_by_.end()) return it->second;
    const std::uint64_t id = locations_.size() + 1;
    Proto loc;
    loc.uint(1, id);
    loc.uint(2, 1);
    loc.uint(3, pc);
    for (std::size_t i = from; i < to; ++i) {  // innermost first, as profile.proto wants
      Proto line;
      line.uint(1, function(*frames[i].second));
      line.sint(2, frames[i].second->line);
      loc.message(4, line);
    }
    locations_.push_back(std::move(loc));
    locations_by_.emplace(key, id);
    return id;
  }
  std::uint64_t synthetic(const std::string& name) {
    const Frame f{name, {}, 0};
    Proto loc;
    const std::uint64_t id = locations_.size() + 1;
    loc.uint(1, id);
    loc.uint(2, 1);
    Proto line;
    line.uint(1, function(f));
    loc.message(4, line);
    locations_.push_back(std::move(loc));
    return id;
  }

  std::map<std::string, std::uint64_t> strings_;
  std::vector<std::string> order_;
  std::vector<Proto> samples_;
  std::vector<Proto> locations_;
  std::vector<Proto> functions_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> functions_by_;
  std::map<std::pair<std::uintptr_t, std::size_t>, std::uint64_t> locations_by_;
};

ProfileBaseline::Key key_of(const ProfileSample& s) {
  return {s.pcs, s.kind, s.resource, s.op, s.task};
}

}  // namespace

namespace detail {

std::size_t first_user_frame(const std::vector<SourceFrame>& frames) {
  return ::stallscope::first_user_frame(frames.size(),
                                        [&](std::size_t i) -> const Frame& { return frames[i]; });
}

std::vector<SourceFrame> user_frames(const std::vector<std::uintptr_t>& pcs) {
  std::vector<SourceFrame> frames;
  for (std::uintptr_t pc : pcs) {
    for (const Frame& f : symbolizer().frames(pc)) frames.push_back(f);
  }
  const std::size_t start = first_user_frame(frames);
  frames.erase(frames.begin(), frames.begin() + static_cast<std::ptrdiff_t>(start));
  return frames;
}

ProfileBaseline profile_baseline(ProfileType type) {
  ProfileBaseline b;
  b.type = type;
  b.taken = std::chrono::steady_clock::now();
  for (const ProfileSample& s : profile_samples(type)) {
    if (!s.in_progress) b.totals[key_of(s)] = {s.count, s.delay_ns};
  }
  return b;
}

std::vector<ProfileSample> samples_since(const ProfileBaseline& base) {
  std::vector<ProfileSample> samples;
  for (ProfileSample& s : profile_samples(base.type)) {
    if (!s.in_progress) {
      const auto it = base.totals.find(key_of(s));
      if (it != base.totals.end()) {
        s.count -= it->second.first;
        s.delay_ns -= it->second.second;
      }
      if (s.count < 0.5) continue;  // nothing new on this stack
    }
    samples.push_back(std::move(s));
  }
  return samples;
}

std::string encode_pprof(const std::vector<ProfileSample>& samples,
                         std::chrono::nanoseconds duration) {
  Builder b;
  for (const ProfileSample& s : samples) b.add(s);
  return gzip_compress(b.finish(duration));
}

std::string pprof_text(const std::vector<ProfileSample>& samples, ProfileType type) {
  // Go writes delays in CPU cycles with their rate; nanoseconds are cycles at 1 GHz.
  std::string out = type == ProfileType::kMutex ? "--- mutex:\n" : "--- contention:\n";
  out += "cycles/second=1000000000\n";
  const ProfileRate rate = profile_rate();
  if (type == ProfileType::kMutex) {
    out += fmt::format("sampling period={}\n",
                       rate.mode == ProfileRate::Mode::kEvents ? rate.every : 0);
  }
  out += fmt::format("# stallscope sampling rate: {}\n", rate.to_string());
  for (const ProfileSample& s : samples) {
    fmt::format_to(std::back_inserter(out), "{:.0f} {:.0f} @", s.delay_ns, s.count);
    for (const std::uintptr_t pc : s.pcs) fmt::format_to(std::back_inserter(out), " {:#x}", pc);
    fmt::format_to(std::back_inserter(out), "\n# labels: kind={} resource={} op={}", s.kind,
                   s.resource, s.op);
    if (!s.task.empty()) fmt::format_to(std::back_inserter(out), " task={}", s.task);
    if (s.in_progress) out += " wait=in_progress";
    out += '\n';
    for (const SourceFrame& f : user_frames(s.pcs)) {
      fmt::format_to(std::back_inserter(out), "#\t{}\t{}:{}\n", f.function, f.file, f.line);
    }
    out += '\n';
  }
  return out;
}

}  // namespace detail

std::string pprof_profile(ProfileType type, std::chrono::seconds delta) {
  if (delta.count() <= 0) return detail::encode_pprof(profile_samples(type), {});
  const detail::ProfileBaseline base = detail::profile_baseline(type);
  std::this_thread::sleep_for(delta);
  return detail::encode_pprof(detail::samples_since(base), delta);
}

}  // namespace stallscope
