document.getElementById("app").textContent = "Hello from the app";
