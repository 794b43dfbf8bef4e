// Vite's defaults, with the output folder given by the test (the app folder stays clean).
export default { build: { outDir: process.env.VITE_OUT_DIR ?? "dist", emptyOutDir: true } };
