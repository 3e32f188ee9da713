// The Redis interop test's judge, written against code nobody at crier wrote: the official
// CloudEvents SDK (`cloudevents`). It reads, on stdin, what `redis-cli --json XRANGE` printed
// of a crier event stream, makes a CloudEvent of each entry's fields (`ce_<attribute>`,
// `content-type`, `data`, as docs/redis.md maps them) and validates it with the SDK.
// Prints one JSON line: {"node": version, "read": [attributes and data of each event]}.
"use strict";
const { CloudEvent } = require("cloudevents");

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  const entries = JSON.parse(input); // [[id, [name, value, name, value, ...]], ...]
  const read = [];
  for (const [id, flat] of entries) {
    const attributes = {};
    let data, contentType;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const [name, value] = [flat[i], flat[i + 1]];
      if (name.startsWith("ce_")) attributes[name.slice(3)] = value;
      else if (name === "content-type") contentType = value;
      else if (name === "data") data = value;
    }
    if (contentType) attributes.datacontenttype = contentType;
    if (data !== undefined) attributes.data = contentType === "application/json" ? JSON.parse(data) : data;
    const event = new CloudEvent(attributes, true); // strict: validated as it is made
    event.validate();
    read.push({ entry: id, ...event.toJSON() });
  }
  console.log(JSON.stringify({ node: process.version, read }));
});
