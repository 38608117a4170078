// Docker cannot run on the CI machines, so docker-compose.yml, the Dockerfile and docker/ are
// checked statically: the YAML is well formed, every file they reference exists in the repository,
// every depends_on target exists, the servers and the relay have health checks, every command
// runs an executable the Dockerfile puts into the image with options that executable defines, and
// docker/ferry.yaml is a valid Ferry configuration.
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ferry/config/config.hpp"

namespace fs = std::filesystem;

namespace {

const fs::path root{FERRY_SOURCE_DIR};

std::string slurp(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

YAML::Node compose() { return YAML::LoadFile((root / "docker-compose.yml").string()); }

// Executables the image contains -> the source file that defines their command-line options.
const std::map<std::string, fs::path>& executables() {
    static const std::map<std::string, fs::path> m = {
        {"ferry-relay", "relay/src/main.cpp"},
        {"ferryctl", "cli/src/main.cpp"},
        {"order-service", "examples/order-service/main.cpp"},
        {"inventory-service", "examples/inventory-service/main.cpp"},
    };
    return m;
}

std::vector<std::string> command_of(const YAML::Node& service) {
    std::vector<std::string> out;
    const auto c = service["command"];
    if (!c) return out;
    if (c.IsSequence()) {
        for (const auto& part : c) out.push_back(part.as<std::string>());
    } else {
        std::istringstream words(c.as<std::string>());
        for (std::string w; words >> w;) out.push_back(w);
    }
    return out;
}

std::vector<std::string> depends_on(const YAML::Node& service) {
    std::vector<std::string> out;
    const auto d = service["depends_on"];
    if (!d) return out;
    if (d.IsSequence()) {
        for (const auto& n : d) out.push_back(n.as<std::string>());
    } else {
        for (const auto& kv : d) out.push_back(kv.first.as<std::string>());
    }
    return out;
}

}  // namespace

TEST(ComposeTest, ParsesAndDefinesTheWholeStory) {
    const auto doc = compose();
    ASSERT_TRUE(doc["services"].IsMap());
    for (const auto* name : {"postgres", "redis", "kafka", "relay", "inventory-service",
                             "notifications", "order-service"}) {
        EXPECT_TRUE(doc["services"][name]) << "service " << name << " missing";
    }
    EXPECT_EQ(doc["services"]["postgres"]["image"].as<std::string>(), "postgres:15");
    EXPECT_EQ(doc["services"]["redis"]["image"].as<std::string>(), "redis:7");
    // Kafka is a real broker in KRaft mode (no ZooKeeper).
    const auto kafka = doc["services"]["kafka"];
    EXPECT_EQ(kafka["image"].as<std::string>().rfind("apache/kafka:", 0), 0u);
    EXPECT_NE(kafka["environment"]["KAFKA_PROCESS_ROLES"].as<std::string>().find("controller"),
              std::string::npos);
}

TEST(ComposeTest, EveryServiceHasAnImageOrABuildWhoseFilesExist) {
    const auto doc = compose();
    std::set<std::string> built_images;
    for (const auto& kv : doc["services"]) {
        const auto name = kv.first.as<std::string>();
        const auto s = kv.second;
        ASSERT_TRUE(s["image"] || s["build"]) << name << ": needs image or build";
        if (const auto b = s["build"]) {
            const fs::path ctx =
                root / (b.IsScalar() ? b.as<std::string>() : b["context"].as<std::string>("."));
            EXPECT_TRUE(fs::is_directory(ctx)) << name << ": build context " << ctx;
            const auto dockerfile =
                b.IsMap() ? b["dockerfile"].as<std::string>("Dockerfile") : "Dockerfile";
            EXPECT_TRUE(fs::is_regular_file(ctx / dockerfile)) << name << ": " << dockerfile;
            if (s["image"]) built_images.insert(s["image"].as<std::string>());
        }
    }
    // A service that names the locally built image must have a service that builds it.
    for (const auto& kv : doc["services"]) {
        const auto s = kv.second;
        if (!s["build"] && s["image"] &&
            s["image"].as<std::string>().find(':') != std::string::npos &&
            s["image"].as<std::string>().rfind("ferry", 0) == 0) {
            EXPECT_TRUE(built_images.count(s["image"].as<std::string>()))
                << kv.first.as<std::string>() << ": image " << s["image"].as<std::string>()
                << " is built by no service";
        }
    }
}

TEST(ComposeTest, EveryMountedFileExists) {
    const auto doc = compose();
    std::set<std::string> named_volumes;
    if (doc["volumes"]) {
        for (const auto& kv : doc["volumes"]) named_volumes.insert(kv.first.as<std::string>());
    }
    for (const auto& kv : doc["services"]) {
        const auto name = kv.first.as<std::string>();
        for (const auto& v : kv.second["volumes"]) {
            const auto spec = v.as<std::string>();
            const auto source = spec.substr(0, spec.find(':'));
            if (source.rfind("./", 0) == 0 || source.rfind("/", 0) == 0) {
                EXPECT_TRUE(fs::exists(root / source)) << name << ": mounts missing " << source;
            } else {
                EXPECT_TRUE(named_volumes.count(source))
                    << name << ": undeclared volume " << source;
            }
        }
    }
}

TEST(ComposeTest, DependenciesExistAndWaitForHealth) {
    const auto doc = compose();
    const auto services = doc["services"];
    for (const auto* name : {"postgres", "redis", "kafka", "relay"}) {
        EXPECT_TRUE(services[name]["healthcheck"]["test"]) << name << ": no healthcheck";
    }
    for (const auto& kv : services) {
        const auto name = kv.first.as<std::string>();
        for (const auto& dep : depends_on(kv.second)) {
            ASSERT_TRUE(services[dep]) << name << " depends on unknown service " << dep;
            const auto cond = kv.second["depends_on"].IsMap()
                                  ? kv.second["depends_on"][dep]["condition"].as<std::string>("")
                                  : std::string{};
            if (cond == "service_healthy") {
                EXPECT_TRUE(services[dep]["healthcheck"])
                    << name << " waits for " << dep << " to be healthy, but it has no healthcheck";
            }
        }
    }
    // The relay and the services start only once the servers answer.
    for (const auto* dep : {"postgres", "redis", "kafka"}) {
        EXPECT_EQ(services["relay"]["depends_on"][dep]["condition"].as<std::string>(""),
                  "service_healthy");
    }
}

TEST(ComposeTest, CommandsRunExecutablesTheImageContainsWithOptionsTheyDefine) {
    const auto doc = compose();
    const auto dockerfile = slurp(root / "Dockerfile");
    for (const auto& kv : doc["services"]) {
        const auto name = kv.first.as<std::string>();
        const auto s = kv.second;
        if (!s["image"] || s["image"].as<std::string>() != "ferry:local") continue;
        const auto cmd = command_of(s);
        ASSERT_FALSE(cmd.empty()) << name << ": no command";
        const auto exe = executables().find(cmd[0]);
        ASSERT_NE(exe, executables().end()) << name << ": unknown executable " << cmd[0];
        EXPECT_NE(dockerfile.find("/opt/ferry/bin/" + cmd[0]), std::string::npos)
            << name << ": the Dockerfile does not copy " << cmd[0] << " into the image";
        const auto source = slurp(root / exe->second);
        ASSERT_FALSE(source.empty()) << exe->second;
        for (const auto& arg : cmd) {
            if (arg.rfind("--", 0) != 0) continue;
            EXPECT_NE(source.find(arg + "\""), std::string::npos)
                << name << ": " << cmd[0] << " has no option " << arg;
        }
        // Every mounted config file the command reads is the one in docker/.
        for (std::size_t i = 0; i + 1 < cmd.size(); ++i) {
            if (cmd[i] == "--config") {
                EXPECT_EQ(cmd[i + 1], "/etc/ferry/ferry.yaml") << name;
            }
        }
    }
    // What the Dockerfile copies from the repository exists.
    std::istringstream lines(dockerfile);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind("COPY ", 0) != 0 || line.find("--from=") != std::string::npos) continue;
        std::istringstream words(line.substr(5));
        std::vector<std::string> w;
        for (std::string x; words >> x;) w.push_back(x);
        for (std::size_t i = 0; i + 1 < w.size(); ++i) {
            EXPECT_TRUE(fs::exists(root / w[i])) << "Dockerfile copies missing " << w[i];
        }
    }
}

TEST(ComposeTest, TheContainersConfigurationIsValid) {
    // With no environment at all: every ${VAR:-default} must fall back to a valid value.
    const auto r = ferry::config::load_file(
        (root / "docker/ferry.yaml").string(),
        [](const std::string&) -> std::optional<std::string> { return std::nullopt; });
    for (const auto& d : r.errors) ADD_FAILURE() << d.to_string();
    EXPECT_EQ(r.config.kafka.brokers, "kafka:19092");
    EXPECT_TRUE(r.config.checkback.groups.count("payments"));
}
