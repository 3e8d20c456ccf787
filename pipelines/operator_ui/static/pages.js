// Inside the Airflow UI these pages sit in a sandboxed frame that may not navigate the whole UI: a link to
// an Airflow page (data-airflow) moves the UI's own router instead; opened on its own, it is a plain link.
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-airflow]");
  if (!link || window.top === window || event.ctrlKey || event.metaKey || event.shiftKey) return;
  try {
    window.top.history.pushState(null, "", link.getAttribute("href"));
    window.top.dispatchEvent(new PopStateEvent("popstate"));
    event.preventDefault();
  } catch (error) {
    // not allowed here: the link opens in the frame
  }
});
// An action form starts a run of the model's DAG through Airflow's REST API, as the logged-in user (the UI's
// cookie): Airflow checks the user's rights and the DAG's params, and its answer is shown beside the button.
document.addEventListener("submit", async (event) => {
  const form = event.target.closest("form[data-dag]");
  if (!form) return;
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  if (button.disabled) return;  // one run per click
  const conf = JSON.parse(form.dataset.conf || "{}");
  for (const [key, value] of new FormData(form)) if (value !== "") conf[key] = value;
  const result = form.querySelector(".result");
  const say = (text, outcome) => { result.className = `result ${outcome}`; result.textContent = text; };
  const dag = encodeURIComponent(form.dataset.dag);
  button.disabled = true;
  say("starting...", "muted");
  try {
    const response = await fetch(`/api/v2/dags/${dag}/dagRuns`, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify({logical_date: null, conf})});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
      say(`not started (${response.status}): ${detail}`, "fail");
      return;
    }
    const link = document.createElement("a");
    link.href = `/dags/${dag}/runs/${encodeURIComponent(body.dag_run_id)}`;
    link.dataset.airflow = "";
    link.textContent = `run ${body.dag_run_id} started`;
    say("", "pass");
    result.replaceChildren(link);
  } catch (error) {
    say(`not started: Airflow did not answer (${error})`, "fail");
  } finally {
    button.disabled = false;
  }
});
