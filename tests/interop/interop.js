// The other side of crier's interop test, written against clients nobody at crier wrote: the
// npm `nats` client and the official CloudEvents SDK (`cloudevents`).
//   node interop.js NATS_URL STREAM PREFIX
// 1. Reads every event message in STREAM (published by crier) and makes a CloudEvent of it
//    with the SDK (binary: `ce-` headers; structured: a CloudEvents JSON body), validated.
// 2. Publishes three events to PREFIX.com.example.test.job: binary and structured (made by
//    the SDK's HTTP binding) and a plain NATS message with neither.
// Prints what it read as one JSON line.
"use strict";
const { connect, headers } = require("nats");
const { CloudEvent, HTTP } = require("cloudevents");

// The NATS binding percent-encodes header values (space, '"', '%', non-ASCII); the SDK's
// HTTP binding, used here for the attribute mapping, does not: decode/encode around it.
const decoded = (v) => decodeURIComponent(v);
const encoded = (v) => String(v).replace(/[^\x21-\x7E]|["%]/g, (c) =>
  Array.from(Buffer.from(c)).map((b) => "%" + b.toString(16).toUpperCase().padStart(2, "0")).join(""));

async function main() {
  const [url, stream, prefix] = process.argv.slice(2);
  const nc = await connect({ servers: url });
  const jsm = await nc.jetstreamManager();
  const js = nc.jetstream();
  const read = [];
  const info = await jsm.streams.info(stream);
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq });
    if (!m.subject.startsWith(prefix + ".")) continue;
    const h = {};
    for (const k of m.header ? m.header.keys() : []) {
      const name = k.toLowerCase();
      h[name] = name.startsWith("ce-") ? decoded(m.header.get(k)) : m.header.get(k);
    }
    const structured = (h["content-type"] || "").startsWith("application/cloudevents");
    const event = HTTP.toEvent({ headers: h, body: Buffer.from(m.data).toString("utf8") });
    event.validate();
    read.push({
      mode: structured ? "structured" : "binary",
      id: event.id, type: event.type, source: event.source, subject: event.subject,
      time: event.time, datacontenttype: event.datacontenttype, partitionkey: event.partitionkey,
      data: event.data,
    });
  }

  const subject = prefix + ".com.example.test.job";
  const make = (id, n, note) => new CloudEvent({
    specversion: "1.0", id, source: "/node/interop", type: "com.example.test.job",
    subject: "from node", datacontenttype: "application/json", partitionkey: "k-js", data: { n, note },
  });
  const send = async (message, msgID) => {
    const h = headers();
    for (const [k, v] of Object.entries(message.headers))
      h.set(k, k.toLowerCase().startsWith("ce-") ? encoded(v) : String(v));
    await js.publish(subject, Buffer.from(message.body), { headers: h, msgID });
  };
  await send(HTTP.binary(make("js-binary-1", 101, "binary mode")), "js-binary-1");
  await send(HTTP.structured(make("js-structured-2", 102, "structured mode")), "js-structured-2");
  const plain = headers();
  plain.set("content-type", "application/json");
  await js.publish(subject, Buffer.from(JSON.stringify({ n: 103, note: "plain" })), { headers: plain, msgID: "js-plain-3" });

  console.log(JSON.stringify({ node: process.version, read }));
  await nc.drain();
}

main().catch((e) => { console.error(e); process.exit(1); });
