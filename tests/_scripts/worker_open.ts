// Opens and closes an object inside a Worker; run by logger_test.ts.
import { openObject } from "../../mod.ts";

const opened = openObject(new URL("../fixtures/attach.bpf.o", import.meta.url));
self.postMessage(opened.programNames);
opened.close();
