// An empty script: `deno run` of it is Deno's own start-up, the floor of bpfscope's.
