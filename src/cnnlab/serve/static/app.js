// The page: pick or drop an image, send it to /predict and /explain, show the answers.
const $ = (id) => document.getElementById(id);

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("result").hidden = true;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return body.error || response.statusText;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

function showTop(top) {
  const list = $("top");
  list.replaceChildren();
  for (const score of top) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "class-name";
    name.textContent = score.name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, score.probability * 100)}%`;
    const probability = document.createElement("span");
    probability.className = "probability";
    probability.textContent = `${(score.probability * 100).toFixed(1)}%`;
    item.append(name, bar, probability);
    list.append(item);
  }
}

// The model's unknown-image detector: "none of my classes", with the closest one named.
function showVerdict(prediction) {
  const verdict = $("verdict");
  verdict.hidden = prediction.known !== false;
  verdict.textContent = `unknown: none of the model's classes (closest: ${prediction.top[0].name})`;
}

async function send(file) {
  $("error").hidden = true;
  const form = new FormData();
  form.append("file", file);
  let response;
  try {
    response = await fetch("/predict?topk=5", { method: "POST", body: form });
  } catch (error) {
    return showError(`the server cannot be reached (${error.message})`);
  }
  if (!response.ok) return showError(await errorOf(response));
  const answer = await response.json();
  $("preview").src = URL.createObjectURL(file);
  showTop(answer.predictions[0].top);
  showVerdict(answer.predictions[0]);
  $("result").hidden = false;
  await showOverlay(form);
}

// Grad-CAM beside the image; where there is none (an ONNX export has no gradients) the panel
// stays and says why, instead of a blank space or a broken image.
async function showOverlay(form) {
  $("overlay").hidden = true;
  $("overlay-caption").textContent = "Grad-CAM: computing…";
  const overlay = await fetch("/explain", { method: "POST", body: form });
  if (overlay.ok) {
    $("overlay").src = URL.createObjectURL(await overlay.blob());
    $("overlay").hidden = false;
    $("overlay-caption").textContent = "Grad-CAM: where the network looked";
  } else {
    $("overlay-caption").textContent = `no Grad-CAM: ${await errorOf(overlay)}`;
  }
}

function percent(value) {
  return `${(value * 100).toFixed(1)}%`;
}

async function describeModel() {
  try {
    const card = await (await fetch("/model")).json();
    const accuracy = card.test_accuracy != null ? `test accuracy ${percent(card.test_accuracy)}`
      : card.val_accuracy != null ? `validation accuracy ${percent(card.val_accuracy)} (no test split)`
      : "accuracy not measured";
    $("run").textContent = `${card.run}: ${accuracy}`;
    $("model").textContent = `${card.name}: ${card.class_names.length} classes ` +
      `(${card.class_names.slice(0, 6).join(", ")}${card.class_names.length > 6 ? ", …" : ""})`;
  } catch (error) {
    showError(`the model description cannot be loaded (${error.message})`);
  }
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) send(event.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) send(event.dataTransfer.files[0]);
});
describeModel();
