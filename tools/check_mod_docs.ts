// Checks that every export of mod.ts has a JSDoc comment with at least one
// @example, as the public surface promises. Run by `deno task check`.
// deno-lint-ignore-file no-console -- a command-line tool reports on stdout and stderr.

interface DocNode {
  name: string;
  declarations: { jsDoc?: { doc?: string; tags?: { kind: string }[] } }[];
}

const root = new URL("../mod.ts", import.meta.url);
const output = await new Deno.Command(Deno.execPath(), {
  args: ["doc", "--json", root.pathname],
  stdout: "piped",
  stderr: "inherit",
}).output();
if (!output.success) {
  console.error("check_mod_docs: `deno doc --json mod.ts` failed");
  Deno.exit(1);
}

const doc = JSON.parse(new TextDecoder().decode(output.stdout)) as {
  nodes: Record<string, { symbols: DocNode[] }>;
};
const symbols = Object.values(doc.nodes).flatMap((node) => node.symbols);
const missing: string[] = [];
for (const symbol of symbols) {
  const documented = symbol.declarations.some((declaration) =>
    (declaration.jsDoc?.doc ?? "").trim() !== "" &&
    (declaration.jsDoc?.tags ?? []).some((tag) => tag.kind === "example")
  );
  if (!documented) missing.push(symbol.name);
}

if (missing.length > 0) {
  console.error(
    `check_mod_docs: these exports of mod.ts lack JSDoc with an @example:\n  ${
      missing.join("\n  ")
    }`,
  );
  Deno.exit(1);
}
console.log(`check_mod_docs: all ${symbols.length} exports of mod.ts have JSDoc with an example`);
