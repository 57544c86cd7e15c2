import assert from "node:assert/strict";
import { parseResourceAttributes, resourceAttributes } from "../plugins/resource.ts";

function envOf(values: Record<string, string>): (name: string) => string | undefined {
  return (name) => values[name];
}

Deno.test("resourceAttributes defaults", () => {
  const resource = resourceAttributes({ hostname: () => "web-1", env: envOf({}) });
  assert.deepEqual(resource, { "host.name": "web-1", "service.name": "bpfscope" });
});

Deno.test("resourceAttributes reads the host name", () => {
  assert.equal(resourceAttributes({ env: envOf({}) })["host.name"], Deno.hostname());
});

Deno.test("resourceAttributes OTEL_SERVICE_NAME wins", () => {
  const resource = resourceAttributes({
    hostname: () => "h",
    env: envOf({
      OTEL_SERVICE_NAME: "agent",
      OTEL_RESOURCE_ATTRIBUTES: "service.name=other,team=core",
    }),
  });
  assert.equal(resource["service.name"], "agent");
  assert.equal(resource["team"], "core");
});

Deno.test("resourceAttributes pairs override host.name", () => {
  const resource = resourceAttributes({
    hostname: () => "h",
    env: envOf({ OTEL_RESOURCE_ATTRIBUTES: "host.name=alias" }),
  });
  assert.equal(resource["host.name"], "alias");
});

Deno.test("parseResourceAttributes decodes and trims", () => {
  assert.deepEqual(parseResourceAttributes(" a = 1 ,b=x%2Cy%3Dz,,c=%20 "), {
    a: "1",
    b: "x,y=z",
    c: "",
  });
});

Deno.test("parseResourceAttributes empty value", () => {
  assert.deepEqual(parseResourceAttributes("a="), { a: "" });
});

Deno.test("parseResourceAttributes entry without equals", () => {
  assert.throws(() => parseResourceAttributes("a=1,broken"), {
    name: "TypeError",
    message: /entry "broken": it has no '='/,
  });
});

Deno.test("parseResourceAttributes empty key", () => {
  assert.throws(() => parseResourceAttributes("=1"), {
    name: "TypeError",
    message: /entry "=1": the key is empty/,
  });
});

Deno.test("parseResourceAttributes bad percent escape", () => {
  assert.throws(() => parseResourceAttributes("a=100%"), {
    name: "TypeError",
    message: /entry "a=100%": it has an invalid percent escape/,
  });
});

Deno.test("resourceAttributes reports malformed env", () => {
  assert.throws(
    () =>
      resourceAttributes({ hostname: () => "h", env: envOf({ OTEL_RESOURCE_ATTRIBUTES: "x" }) }),
    { name: "TypeError", message: /OTEL_RESOURCE_ATTRIBUTES entry "x"/ },
  );
});
