// The README's metrics reference names every family the endpoint exports, and nothing else.
// Exercises every kind of resource once, collects, and compares with the README's table rows
// (lines starting "| `stallscope_").
#include <chrono>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <catch2/catch.hpp>
#include <stallscope/stallscope.hpp>

namespace asio = boost::asio;

namespace {

std::set<std::string> exported_families() {
  stallscope::Mutex lock("readme-lock");
  stallscope::SharedMutex rw("readme-rwlock");
  stallscope::Channel<int> channel("readme-channel", 4);
  stallscope::Semaphore semaphore("readme-semaphore", 2);
  stallscope::AsyncMutex async_lock("readme-async-lock");
  stallscope::BlockingPool pool("readme-pool", 1);
  stallscope::RetryBudget retry_budget("readme-retry");
  {
    std::lock_guard g(lock);
    std::shared_lock s(rw);
  }
  REQUIRE(channel.send(1).accepted());
  (void)channel.receive();
  (void)semaphore.try_acquire();
  asio::io_context io;
  stallscope::spawn(
      io.get_executor(), "readme-task", []() -> asio::awaitable<void> { co_return; },
      asio::detached);
  io.run();
  std::set<std::string> names;
  for (const auto& f : stallscope::Collectable{}.Collect()) names.insert(f.name);
  return names;
}

std::set<std::string> documented_families() {
  std::ifstream in(STALLSCOPE_README_PATH);
  REQUIRE(in.good());
  const std::regex row(R"(^\| `(stallscope_[a-z0-9_]+)`)");
  std::set<std::string> names;
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_search(line, m, row)) names.insert(m[1]);
  }
  return names;
}

}  // namespace

TEST_CASE("the README metrics reference documents exactly the exported families", "[readme]") {
  const auto exported = exported_families();
  const auto documented = documented_families();
  for (const auto& n : exported) {
    INFO("exported but not in the README's metrics reference: " << n);
    CHECK(documented.count(n) == 1);
  }
  for (const auto& n : documented) {
    INFO("in the README's metrics reference but not exported: " << n);
    CHECK(exported.count(n) == 1);
  }
}
