//! A local Azure Functions host: reads host.json and function.json, starts the custom handler, drives its triggers.
