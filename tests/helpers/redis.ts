// The bench starts Redis the same way; the one implementation is in bench/, which the build compiles and tests may import.
export { redisInstalled, startRedis, type RedisServer } from '../../bench/redis.ts'
