// Gradle (Kotlin DSL) snippet for an app module that embeds thinkling through
// Chaquopy. NOT BUILT in thinkling's CI; versions are the ones we would start
// from; check https://chaquo.com/chaquopy/doc/current/ for your AGP version.
//
// settings.gradle.kts / top-level build.gradle.kts:
//     plugins { id("com.chaquo.python") version "16.1.0" apply false }

plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("com.chaquo.python")
}

android {
    defaultConfig {
        minSdk = 24
        // Phones are arm64; add "x86_64" for the emulator only if you built a wheel for it.
        ndk { abiFilters += listOf("arm64-v8a") }
    }
    // Do not compress model files if you ship one as an asset pack (llama.cpp mmaps it).
    androidResources { noCompress += listOf("gguf") }
}

chaquopy {
    defaultConfig {
        version = "3.11"
        pip {
            // Chaquopy's own index has numpy for Android.
            install("numpy")
            // gguf is pure Python; thinkling reads GGUF metadata with it.
            install("gguf")
            // llama-cpp-python has no Android wheel on PyPI and Chaquopy installs
            // wheels only: build one with the NDK (docs/mobile.md) and point at it.
            install("wheels/llama_cpp_python-0.3.16-py3-none-android_24_arm64_v8a.whl")
        }
    }
    sourceSets {
        // Copy runtime/ and mobile_bridge/ from the thinkling repo here (or add
        // the repo root with srcDir). Not the model: it is downloaded at first run.
        getByName("main") { srcDir("src/main/python") }
    }
}
