set terminal pngcairo size 900,600 noenhanced
set grid
set key left top
set output "allreduce_busbw_gpu2.png"
set title "allreduce_busbw_gpu2: allreduce bus bandwidth"
set xlabel 'message size (bytes)'
set ylabel 'busbw (GB/s)'
set logscale x 2
set format x '%.0b %BB'
set yrange [0:*]
plot "allreduce_busbw_gpu2.dat" index 0 using 1:2 with linespoints lw 2 pt 7 title "raw ncclAllReduce", \
     "allreduce_busbw_gpu2.dat" index 1 using 1:2 with linespoints lw 2 pt 7 title "kolo NcclBackend"
