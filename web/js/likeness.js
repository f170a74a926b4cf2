// Likeness canvas extension: entry point. Each feature is its own module beside this file.
import { app } from "../../../scripts/app.js";

app.registerExtension({
  name: "likeness.core",
  async setup() {
    window.__likeness = Object.assign(window.__likeness || {}, { loaded: true });
  },
});
