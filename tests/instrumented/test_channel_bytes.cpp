// Channel<T> payload bytes (ChannelOptions::size_of) and sender tasks: bytes sent and queued are
// exact through every way an item enters or leaves the data lane, and the distinct task names
// that send on a channel are counted, up to the cap.
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <catch2/catch.hpp>

#include "stallscope/channel.hpp"
#include "stallscope/task.hpp"
#include "support/metrics.hpp"
#include "support/poll.hpp"

namespace asio = boost::asio;
using namespace stallscope;  // Channel, ChannelOptions, OverflowPolicy, SendOutcome
using namespace stallscope::testing;

namespace {

ChannelOptions<std::string> sized(OverflowPolicy policy, std::size_t capacity) {
  ChannelOptions<std::string> o{.capacity = capacity, .policy = policy};
  o.size_of = [](const std::string& s) { return s.size(); };
  return o;
}

// The two byte families of `name`; -1 when the series is missing (recording compiled out).
double queued_bytes(const std::string& name) {
  return value("stallscope_channel_queued_bytes", {{"resource", name}}).value_or(-1);
}
double sent_bytes(const std::string& name) {
  return value("stallscope_channel_sent_bytes_total", {{"resource", name}}).value_or(-1);
}
double sender_tasks(const std::string& name) {
  return value("stallscope_channel_sender_tasks", {{"resource", name}}).value_or(-1);
}

// Checks how many task names sent on `name`'s data lane.
void check_senders(const std::string& name, double n) {
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(sender_tasks(name) == n);
}

// Checks the bytes of `name`: what is queued now and what was sent in all.
void check_bytes(const std::string& name, double queued, double sent) {
  if constexpr (!STALLSCOPE_ENABLED) return;
  CHECK(queued_bytes(name) == queued);
  CHECK(sent_bytes(name) == sent);
}

// Waits until one thread is blocked sending on `name` (recording compiled out: returns at once;
// the test's outcome asserts still hold, only the metric ones are skipped).
void await_waiting_sender(const std::string& name) {
  if constexpr (!STALLSCOPE_ENABLED) return;
  REQUIRE(eventually([&] {
    return value("stallscope_waiters", {{"resource", name}, {"op", "send"}}).value_or(0) == 1;
  }));
}

}  // namespace

TEST_CASE("bytes sent and queued follow sends and receives exactly", "[channel][bytes]") {
  const std::string name = unique_name("bytes");
  Channel<std::string> ch(name, sized(OverflowPolicy::kWait, 4));
  REQUIRE(ch.try_send("abc").outcome == SendOutcome::kEnqueued);
  REQUIRE(ch.try_send("hello").outcome == SendOutcome::kEnqueued);
  check_bytes(name, 8, 8);
  REQUIRE(ch.try_receive() == "abc");
  check_bytes(name, 5, 8);
  // The control lane is not measured: neither sent nor queued data.
  REQUIRE(ch.send_control("control-item").accepted());
  check_bytes(name, 5, 8);
  REQUIRE(ch.try_receive() == "control-item");
  REQUIRE(ch.try_receive() == "hello");
  check_bytes(name, 0, 8);
  // A refused send is sent (as stallscope_channel_sent_total counts it) but never queued.
  for (int i = 0; i < 4; ++i) REQUIRE(ch.try_send("1234567").accepted());
  const auto refused = ch.try_send("xy");
  CHECK(refused.outcome == SendOutcome::kShed);
  check_bytes(name, 28, 38);
  const std::vector<std::string> rest = ch.drain();
  CHECK(rest.size() == 4);
  check_bytes(name, 0, 38);
}

TEST_CASE("without a size function nothing is measured", "[channel][bytes]") {
  const std::string name = unique_name("unsized");
  Channel<std::string> ch(name, 4);
  REQUIRE(ch.try_send("abc").accepted());
  REQUIRE(ch.try_receive() == "abc");
  REQUIRE(ch.try_send("abcdef").accepted());
  check_bytes(name, 0, 0);
}

TEST_CASE("drop policies and merge keep queued bytes exact", "[channel][bytes]") {
  SECTION("drop_oldest: the evicted item leaves, the new one enters") {
    const std::string name = unique_name("bytes-drop-oldest");
    Channel<std::string> ch(name, sized(OverflowPolicy::kDropOldest, 2));
    REQUIRE(ch.try_send("aa").accepted());
    REQUIRE(ch.try_send("bbbb").accepted());
    const auto r = ch.try_send("cccccc");
    REQUIRE(r.outcome == SendOutcome::kDroppedOldest);
    CHECK(r.item == "aa");
    check_bytes(name, 10, 12);
  }
  SECTION("drop_newest: the refused item never enters") {
    const std::string name = unique_name("bytes-drop-newest");
    Channel<std::string> ch(name, sized(OverflowPolicy::kDropNewest, 1));
    REQUIRE(ch.try_send("aa").accepted());
    CHECK(ch.try_send("bbbbbbb").outcome == SendOutcome::kDroppedNewest);
    check_bytes(name, 2, 9);
  }
  SECTION("merge: the queued item's growth is counted, a failed merge's change too") {
    const std::string name = unique_name("bytes-merge");
    auto o = sized(OverflowPolicy::kMerge, 1);
    o.merge = [](std::string& queued, std::string& incoming) {
      if (incoming == "nomatch") return false;
      queued += incoming.substr(0, 2);  // keeps part of the incoming item
      if (incoming == "throw") throw std::runtime_error("merge failed half way");
      return true;
    };
    Channel<std::string> ch(name, o);
    REQUIRE(ch.try_send("abc").accepted());
    CHECK(ch.try_send("defg").outcome == SendOutcome::kMerged);  // "abcde"
    check_bytes(name, 5, 7);
    CHECK(ch.try_send("nomatch").outcome == SendOutcome::kShed);
    check_bytes(name, 5, 14);
    CHECK(ch.try_send("throw").outcome == SendOutcome::kShed);  // "abcdeth" stays queued
    check_bytes(name, 7, 19);
    CHECK(ch.try_receive() == "abcdeth");
    check_bytes(name, 0, 19);
  }
}

TEST_CASE("a waiting sender's item is queued bytes only once it enters", "[channel][bytes]") {
  const std::string name = unique_name("bytes-wait");
  Channel<std::string> ch(name, sized(OverflowPolicy::kWait, 1));
  REQUIRE(ch.try_send("first").accepted());
  std::optional<stallscope::SendResult<std::string>> waited;
  std::thread sender([&] { waited.emplace(ch.send("second-item")); });
  await_waiting_sender(name);
  check_bytes(name, 5, 16);        // sent (counted when the send began) but waiting: not queued yet
  CHECK(ch.receive() == "first");  // the waiting sender's item takes the freed room
  sender.join();
  REQUIRE(waited);
  CHECK(waited->outcome == SendOutcome::kEnqueued);
  check_bytes(name, 11, 16);

  // close: a waiting sender gets its item back and nothing enters; queued items stay queued.
  std::thread refused([&] { waited.emplace(ch.send("never-queued")); });
  await_waiting_sender(name);
  ch.close();
  refused.join();
  CHECK(waited->outcome == SendOutcome::kClosed);
  check_bytes(name, 11, 28);
  CHECK(ch.receive() == "second-item");
  check_bytes(name, 0, 28);
}

TEST_CASE("live objects' queued bytes are summed; a destroyed one's leave", "[channel][bytes]") {
  const std::string name = unique_name("bytes-objects");
  Channel<std::string> kept(name, sized(OverflowPolicy::kWait, 4));
  REQUIRE(kept.try_send("1234").accepted());
  {
    Channel<std::string> gone(name, sized(OverflowPolicy::kWait, 4));
    REQUIRE(gone.try_send("123456789").accepted());
    check_bytes(name, 13, 13);
    // Destroyed with an item queued: dropped (and logged); its bytes are no longer queued.
  }
  check_bytes(name, 4, 13);
}

namespace {

// Runs one task per name, each sending `per_task` items on `ch`'s data lane.
void send_from_tasks(Channel<int>& ch, const std::vector<std::string>& names, int per_task) {
  asio::io_context io;
  for (const std::string& task : names) {
    stallscope::spawn(
        io.get_executor(), task,
        [&ch, per_task]() -> asio::awaitable<void> {
          for (int i = 0; i < per_task; ++i) {
            const auto r = co_await ch.async_send(i);
            (void)r;
          }
        },
        asio::detached);
  }
  io.run();
}

}  // namespace

TEST_CASE("distinct sender task names are counted per channel, up to 16", "[channel][senders]") {
  const std::string name = unique_name("senders");
  Channel<int> ch(name, 1024, OverflowPolicy::kDropOldest);
  // Sends from a thread outside any task are not attributed.
  REQUIRE(ch.try_send(1).accepted());
  check_senders(name, 0);

  const std::string a = unique_name("sender-a"), b = unique_name("sender-b");
  send_from_tasks(ch, {a, a, b}, 5);  // two tasks of one name, one of another
  check_senders(name, 2);

  // A control send is not data-lane traffic.
  asio::io_context io;
  stallscope::spawn(
      io.get_executor(), unique_name("control-only"),
      [&]() -> asio::awaitable<void> {
        (void)ch.send_control(7);
        co_return;
      },
      asio::detached);
  io.run();
  check_senders(name, 2);

  // A second object of the same name: the union of both, each name once.
  Channel<int> twin(name, 1024, OverflowPolicy::kDropOldest);
  const std::string c = unique_name("sender-c");
  send_from_tasks(twin, {a, c}, 2);
  check_senders(name, 3);

  std::vector<std::string> many;
  for (int i = 0; i < 20; ++i) many.push_back(unique_name("sender-many"));
  send_from_tasks(ch, many, 1);
  check_senders(name, 16);  // the cap
}

TEST_CASE("sender tasks are those of live objects", "[channel][senders]") {
  const std::string name = unique_name("senders-gone");
  {
    Channel<int> ch(name, 64, OverflowPolicy::kDropOldest);
    send_from_tasks(ch, {unique_name("gone-a"), unique_name("gone-b")}, 3);
    (void)ch.drain();
    check_senders(name, 2);
  }
  check_senders(name, 0);
  Channel<int> again(name, 64, OverflowPolicy::kDropOldest);
  send_from_tasks(again, {unique_name("gone-c")}, 1);
  check_senders(name, 1);
}
