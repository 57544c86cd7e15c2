// Opens and closes an object inside a Worker; run by logger_test.ts.
import { openObject } from "../../mod.ts";

const opened = openObject(new URL("../fixtures/attach.bpf.o", import.meta.url));
// Type-checked as a main-thread module, where postMessage has another signature.
(globalThis as unknown as { postMessage(message: unknown): void }).postMessage(opened.programNames);
opened.close();
