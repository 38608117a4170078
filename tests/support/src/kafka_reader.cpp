#include "ferry/test/kafka_reader.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "ferry/test/env.hpp"
#include "ferry/test/unique_name.hpp"

namespace ferry::test {

namespace {

using steady = std::chrono::steady_clock;

void set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
    char errstr[512];
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
        RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        throw std::invalid_argument("kafka_reader: " + key + "=" + value + ": " + errstr);
    }
}

std::chrono::milliseconds remaining(steady::time_point deadline) {
    return std::max(
        std::chrono::milliseconds(0),
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()));
}

}  // namespace

std::optional<std::string> kafka_record::header(std::string_view name) const {
    std::optional<std::string> last;
    for (const auto& h : headers) {
        if (h.name == name) {
            last = h.value;
        }
    }
    return last;
}

kafka_reader::kafka_reader(std::string topic, const kafka_reader_options& options)
    : _topic(std::move(topic)) {
    const std::string brokers = options.brokers.empty() ? kafka_brokers() : options.brokers;
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", brokers);
    // A fresh group id that is never joined: assign() below does not use the group protocol.
    set(conf, "group.id", unique_name("kafka_reader"));
    set(conf, "enable.auto.commit", "false");
    set(conf, "enable.auto.offset.store", "false");
    set(conf, "enable.partition.eof", "true");
    set(conf, "auto.offset.reset", "earliest");
    set(conf, "isolation.level", options.isolation_level);
    set(conf, "allow.auto.create.topics", "false");
    set(conf, "topic.metadata.refresh.interval.ms", "1000");
    for (const auto& [key, value] : options.config) {
        set(conf, key, value);
    }
    char errstr[512];
    _rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (_rk == nullptr) {
        rd_kafka_conf_destroy(conf);
        throw std::runtime_error(std::string("kafka_reader: rd_kafka_new: ") + errstr);
    }
}

kafka_reader::~kafka_reader() {
    if (_rk != nullptr) {
        rd_kafka_consumer_close(_rk);
        rd_kafka_destroy(_rk);
    }
}

bool kafka_reader::assign(steady::time_point deadline) {
    if (_partition_count > 0) {
        return true;
    }
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(_rk, _topic.c_str(), nullptr);
    if (rkt == nullptr) {
        throw std::runtime_error("kafka_reader: rd_kafka_topic_new(" + _topic + ") failed");
    }
    // The topic may not exist yet (the relay creates it by producing); keep asking until the
    // deadline rather than failing on the first UNKNOWN_TOPIC_OR_PART.
    int partitions = 0;
    do {
        const rd_kafka_metadata_t* md = nullptr;
        const auto wait = std::clamp(remaining(deadline), std::chrono::milliseconds(100),
                                     std::chrono::milliseconds(5000));
        rd_kafka_resp_err_t err =
            rd_kafka_metadata(_rk, 0, rkt, &md, static_cast<int>(wait.count()));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                partitions = md->topics[0].partition_cnt;
            } else if (md->topic_cnt == 1) {
                _last_error = rd_kafka_err2str(md->topics[0].err);
            }
            rd_kafka_metadata_destroy(md);
        } else {
            _last_error = rd_kafka_err2str(err);
        }
        if (partitions == 0) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    } while (partitions == 0 && steady::now() < deadline);
    rd_kafka_topic_destroy(rkt);
    if (partitions == 0) {
        return false;
    }

    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) {
        rd_kafka_topic_partition_list_add(list, _topic.c_str(), p)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(_rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        throw std::runtime_error("kafka_reader: assign " + _topic + ": " + rd_kafka_err2str(err));
    }
    _partition_count = partitions;
    _at_eof.assign(static_cast<std::size_t>(partitions), false);
    return true;
}

bool kafka_reader::poll_once(std::chrono::milliseconds wait) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(_rk, static_cast<int>(wait.count()));
    if (msg == nullptr) {
        return false;
    }
    bool added = false;
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (msg->partition >= 0 && msg->partition < _partition_count) {
            _at_eof[static_cast<std::size_t>(msg->partition)] = true;
        }
    } else if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // Transient consumer errors (broker down, leader change) are retried by librdkafka;
        // remember the last one for the timeout message. Fatal errors end the read.
        _last_error = rd_kafka_message_errstr(msg);
        char fatal[512];
        if (rd_kafka_fatal_error(_rk, fatal, sizeof(fatal)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_message_destroy(msg);
            throw std::runtime_error("kafka_reader: fatal consumer error: " + std::string(fatal));
        }
    } else {
        kafka_record rec;
        rec.topic = rd_kafka_topic_name(msg->rkt);
        rec.partition = msg->partition;
        rec.offset = msg->offset;
        if (msg->key != nullptr) {
            rec.key.emplace(static_cast<const char*>(msg->key), msg->key_len);
        }
        if (msg->payload != nullptr) {
            rec.value.emplace(static_cast<const char*>(msg->payload), msg->len);
        }
        rd_kafka_timestamp_type_t ts_type;
        rec.timestamp_ms = rd_kafka_message_timestamp(msg, &ts_type);
        rd_kafka_headers_t* hdrs = nullptr;
        if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            const char* name = nullptr;
            const void* value = nullptr;
            size_t size = 0;
            for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
                               RD_KAFKA_RESP_ERR_NO_ERROR;
                 ++i) {
                kafka_header h{name, std::nullopt};
                if (value != nullptr) {
                    h.value.emplace(static_cast<const char*>(value), size);
                }
                rec.headers.push_back(std::move(h));
            }
        }
        if (msg->partition >= 0 && msg->partition < _partition_count) {
            _at_eof[static_cast<std::size_t>(msg->partition)] = false;
        }
        _records.push_back(std::move(rec));
        added = true;
    }
    rd_kafka_message_destroy(msg);
    return added;
}

std::vector<kafka_record> kafka_reader::read(std::size_t count, std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    if (!assign(deadline)) {
        return _records;
    }
    while (_records.size() < count && steady::now() < deadline) {
        poll_once(std::min(remaining(deadline), std::chrono::milliseconds(100)));
    }
    return _records;
}

std::vector<kafka_record> kafka_reader::read_all(std::chrono::milliseconds quiet,
                                                 std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    if (!assign(deadline)) {
        return _records;
    }
    auto last_activity = steady::now();
    while (steady::now() < deadline) {
        if (poll_once(std::min(remaining(deadline), std::chrono::milliseconds(50)))) {
            last_activity = steady::now();
            continue;
        }
        const bool all_eof = std::all_of(_at_eof.begin(), _at_eof.end(), [](bool b) { return b; });
        if (all_eof && steady::now() - last_activity >= quiet) {
            break;
        }
    }
    return _records;
}

}  // namespace ferry::test
