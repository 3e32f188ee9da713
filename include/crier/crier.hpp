// crier: a C++20 event bus. Include this one header.
//
//   struct OrderPlaced { std::string id; };
//   CRIER_EVENT(OrderPlaced, "com.example.order.placed");
//
//   crier::Bus bus;
//   auto sub = bus.subscribe<OrderPlaced>("audit", [](const OrderPlaced& e) { ... });
//   bus.publish(OrderPlaced{"o-1"});
#pragma once

#include "crier/bus.hpp"
#include "crier/clock.hpp"
#include "crier/codec.hpp"
#include "crier/dead_letter.hpp"
#include "crier/delivery.hpp"
#include "crier/envelope.hpp"
#include "crier/error.hpp"
#include "crier/event.hpp"
#include "crier/metrics.hpp"
#include "crier/options.hpp"
#include "crier/policy.hpp"
#include "crier/subscription.hpp"
