// Thinkling.kt: the Kotlin face of thinkling's mobile_bridge (through Chaquopy).
//
// Copy this file into your app (change the package), add the Gradle snippet in
// chaquopy.gradle.kts, and put the thinkling sources (runtime/ and mobile_bridge/)
// under src/main/python. NOT COMPILED in thinkling's CI: the Python side it calls
// is tested under CPython on Linux; this wrapper must be built and run on a device.
//
// Every method returns the bridge's JSON reply as a JSONObject and never throws
// for bridge errors: check reply.optJSONObject("error")?.getString("code").
// loadModel() and complete() block (seconds): call them off the main thread.

package ai.thinkling.bridge

import android.content.ComponentCallbacks2
import android.content.Context
import android.os.Handler
import android.os.Looper
import com.chaquo.python.PyObject
import com.chaquo.python.Python
import com.chaquo.python.android.AndroidPlatform
import org.json.JSONObject
import java.io.File

class Thinkling(context: Context) {

    /** Receives every event as a JSON string, on a background (Python) thread. */
    fun interface Listener {
        fun onEvent(eventJson: String)
    }

    private val bridge: PyObject

    init {
        if (!Python.isStarted()) {
            Python.start(AndroidPlatform(context.applicationContext))
        }
        val py = Python.getInstance()
        // Models and caches live in app-private storage, never inside the APK.
        val home = File(context.filesDir, "thinkling").apply { mkdirs() }
        py.getModule("os")["environ"]!!.callAttr("__setitem__", "THINKLING_HOME", home.path)
        bridge = py.getModule("thinkling.mobile_bridge")
    }

    fun info(): JSONObject = call("info")
    fun listModels(): JSONObject = call("list_models")

    /** e.g. JSONObject().put("model", file.path).put("cpu_affinity", "big").put("n_ctx", 2048) */
    fun loadModel(options: JSONObject = JSONObject()): JSONObject = call("load_model", options.toString())
    fun unloadModel(): JSONObject = call("unload_model")

    /** The HTTP chat body: messages, max_tokens, temperature, stop, think, reasoning_budget, deadline_ms. */
    fun generate(request: JSONObject): JSONObject = call("generate", request.toString())

    /** Events since the last poll; waits up to waitMs (max 10 000) for the first one. */
    fun poll(requestId: String, waitMs: Int = 0): JSONObject = call("poll", requestId, waitMs)
    fun cancel(requestId: String): JSONObject = call("cancel", requestId)
    fun complete(request: JSONObject): JSONObject = call("complete", request.toString())
    fun shutdown(): JSONObject = call("shutdown")

    /**
     * Push events instead of buffering them for poll. Python calls listener.onEvent
     * on its own thread; this hops to the main thread for you when onMain is true.
     * A listener that throws does not stop the stream: the event is kept for poll.
     */
    fun setListener(listener: Listener?, onMain: Boolean = true): JSONObject {
        if (listener == null) return call("set_callback", null)
        val main = Handler(Looper.getMainLooper())
        val target = if (onMain) Listener { json -> main.post { listener.onEvent(json) } } else listener
        return call("set_callback", target)
    }

    /** Wire to ComponentCallbacks2.onTrimMemory / onLowMemory. */
    fun onTrimMemory(level: Int): JSONObject? = levelFor(level)?.let {
        call("memory_pressure", JSONObject().put("level", it).toString())
    }

    private fun call(name: String, vararg args: Any?): JSONObject =
        JSONObject(bridge.callAttr(name, *args).toString())

    companion object {
        /**
         * Android trim level -> bridge level. "critical" unloads the model (a later
         * generate answers not_loaded until loadModel); "moderate" only drops
         * finished requests. Levels below RUNNING_LOW are ignored.
         */
        @Suppress("DEPRECATION")
        fun levelFor(trimLevel: Int): String? = when {
            trimLevel >= ComponentCallbacks2.TRIM_MEMORY_BACKGROUND -> "critical"
            trimLevel == ComponentCallbacks2.TRIM_MEMORY_RUNNING_CRITICAL -> "critical"
            trimLevel >= ComponentCallbacks2.TRIM_MEMORY_RUNNING_LOW -> "moderate"
            else -> null
        }
    }
}

// Usage sketch (a ViewModel; Dispatchers.IO for the blocking calls):
//
//   val tk = Thinkling(app)
//   viewModelScope.launch(Dispatchers.IO) {
//       val load = tk.loadModel(JSONObject().put("model", modelFile.path).put("cpu_affinity", "big"))
//       load.optJSONObject("error")?.let { /* show it */ return@launch }
//       val id = tk.generate(JSONObject()
//           .put("messages", JSONArray().put(JSONObject().put("role", "user").put("content", "2+2?")))
//           .put("max_tokens", 64).put("think", "auto")).getString("request_id")
//       while (true) {
//           val events = tk.poll(id, waitMs = 1000).getJSONArray("events")
//           for (i in 0 until events.length()) {
//               val e = events.getJSONObject(i)
//               when (e.getString("type")) {
//                   "reasoning", "answer" -> append(e.getString("type"), e.getString("text"))
//                   "done", "error", "cancelled" -> return@launch finish(e)
//               }
//           }
//       }
//   }
