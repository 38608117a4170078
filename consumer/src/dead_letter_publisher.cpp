#include "dead_letter_publisher.hpp"

#include <spdlog/spdlog.h>

namespace ferry::consumer::detail {

dead_letter_publisher::dead_letter_publisher(rd_kafka_t* producer, std::string topic)
    : _producer(producer), _topic(std::move(topic)) {}

dead_letter_publisher::~dead_letter_publisher() {
    rd_kafka_flush(_producer, 2000);
    rd_kafka_destroy(_producer);
}

void dead_letter_publisher::publish(const message& m, const std::string& reason) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(m.headers.size() + 1);
    for (const auto& x : m.headers) {
        rd_kafka_header_add(h, x.name.c_str(), -1, x.value ? x.value->data() : nullptr,
                            x.value ? static_cast<ssize_t>(x.value->size()) : 0);
    }
    rd_kafka_header_add(h, "ferry-dlq-reason", -1, reason.data(),
                        static_cast<ssize_t>(reason.size()));
    std::lock_guard lock(_mutex);
    void* key_ptr = m.key ? const_cast<char*>(m.key->data()) : nullptr;
    const std::size_t key_len = m.key ? m.key->size() : 0;
    const auto err = rd_kafka_producev(
        _producer, RD_KAFKA_V_TOPIC(_topic.c_str()), RD_KAFKA_V_KEY(key_ptr, key_len),
        RD_KAFKA_V_VALUE(const_cast<char*>(m.payload.data()), m.payload.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(h);
        spdlog::warn("event=dlq_publish_failed topic={} error=\"{}\"", _topic,
                     rd_kafka_err2str(err));
    }
    rd_kafka_poll(_producer, 0);
}

}  // namespace ferry::consumer::detail
