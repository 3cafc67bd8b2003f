"""Azure Functions entry point (Python v2 model): telemetry setup and one blueprint per trigger module.

All logic lives in the `shared` package; importing this module must stay cheap (no azure.mgmt imports),
because it runs on every cold start.
"""

import azure.functions as func

from shared.functions import dashboard, housekeeping, http, timers, workers
from shared.telemetry import configure_telemetry

configure_telemetry()

app = func.FunctionApp()
app.register_functions(timers.bp)
app.register_functions(workers.bp)
app.register_functions(http.bp)
app.register_functions(dashboard.bp)
app.register_functions(housekeeping.bp)
