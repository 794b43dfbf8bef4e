// Runs kept only in memory (a Cloudflare Worker; Deno without write access) end with the
// isolate or process: finishing one names what the server did not take, so it is not lost
// silently.

// Wraps createTidelog()'s `api`: `inMemory(opts)` says whether init(opts) keeps its run in memory.
export function sayWhatIsDropped(api, inMemory, warn) {
  return {
    ...api,
    async init(opts) {
      const run = await api.init(opts);
      if (inMemory(opts ?? {})) {
        const finish = run.finish.bind(run);
        run.finish = async (o) => {
          if (run._finished) return;
          let reports = null;
          const off = api.on("sync", (d) => { if (d.phase !== "start") reports = d.reports; });
          try {
            await finish(o);
          } finally {
            off();
            const report = reports?.find((r) => r.id === run.id);
            const lost = run._w.records - (report && !report.error ? report.acked_records : 0);
            if (lost > 0) {
              const why = report?.error ?? (reports ? "not synced" : "no server and apiKey to sync to");
              warn(`tidelog: run ${run.id} is kept in memory only: ${lost} of its records were not synced (${why}) and are lost when this isolate or process ends`);
            }
          }
        };
      }
      return run;
    },
  };
}
