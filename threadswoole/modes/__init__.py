"""Layer 7, the mode drivers: how SWOOLE_BASE, SWOOLE_PROCESS and SWOOLE_THREAD wire layers 2-6
together (start order, forks, threads, signals, shutdown), plus PROCESS-mode reactor threads.
May import: layers 1-6."""
